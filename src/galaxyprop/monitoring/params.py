"""The schema of params `drift`: the Evidently tests between survey fields and the control splits."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.validation.rules import Schema, reuse


def _check_drift(drift: Mapping, params: Mapping) -> None:
    from galaxyprop.monitoring.drift import DriftSettings

    reuse("drift.tests", lambda: DriftSettings.from_params(drift.get("tests") or {}))


DRIFT_SCHEMA = Schema(
    rules={"drift.reference_field": "str", "drift.tests": "map?", "drift.tests.column_method": "str",
           "drift.tests.alarm_rate": "open01", "drift.tests.column_threshold": "nonneg?",
           "drift.tests.drift_share": "fraction?", "drift.tests.embedding_method": "str",
           "drift.tests.embedding_threshold": "nonneg?", "drift.tests.embedding_bootstrap": "bool?",
           "drift.embedding_map": "bool", "drift.control_splits": "natural", "drift.seed": "int"},
    required={"drift": ("reference_field",)},
    checks={"drift": _check_drift})
