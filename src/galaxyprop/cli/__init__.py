"""The `galaxyprop` command: `main` parses the arguments (cli.main); the registry commands (promote,
rollback, history, models, lineage) live in cli.registry and `galaxyprop drift` in cli.drift."""
