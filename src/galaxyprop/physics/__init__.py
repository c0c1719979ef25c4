"""Filters, magnitudes, k-corrections: small pure functions tested against kcorrect."""
