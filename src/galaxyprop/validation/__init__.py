"""Validation of params.yaml before any stage or command uses it: `rules` (the rule names, the `Schema`
each package declares beside its code for the sections it reads, `validate`) and `project` (every
schema together: what check_params and the CLI run). `ParamsError` is one line naming the dotted key.

The package imports neither on its own, so that the config module and the packages' schemas can import
`validation.rules` without importing every capability."""
