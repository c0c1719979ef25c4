"""Validation of params.yaml as a whole, before any stage or command uses it: `validate_params`
raises `ParamsError`, one line naming the dotted key and what is wrong with its value."""

from __future__ import annotations

from galaxyprop.validation.params import VALIDATED_SECTIONS, ParamsError, validate_params

__all__ = ["VALIDATED_SECTIONS", "ParamsError", "validate_params"]
