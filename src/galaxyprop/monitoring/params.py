"""The schema of params `drift`: the Evidently tests between survey fields and the control splits."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.validation.rules import Schema, fail, got, reuse


def source_fields(params: Mapping) -> set[str] | None:
    """The survey fields (by name: north, south) the selected data source has: the mock's `fields`, a
    DESI source's PHOTSYS fields; None for a catalogue source, whose file alone can tell (the drift stage
    takes its one field as the reference when it has no PHOTSYS)."""
    from galaxyprop.data.schema import FIELDS, field_name

    data = params.get("data") or {}
    spec = (data.get("sources") or {}).get(data.get("source")) or {}
    if data.get("source") == "mock":
        fields = (params.get("mock") or {}).get("fields") or {}
        return {field_name(f["photsys"]) for f in fields.values() if isinstance(f, Mapping) and "photsys" in f}
    return set(FIELDS.values()) if spec.get("kind") == "desi" else None


def _check_drift(drift: Mapping, params: Mapping) -> None:
    from galaxyprop.monitoring.drift import DriftSettings

    reuse("drift.tests", lambda: DriftSettings.from_params(drift.get("tests") or {}))
    fields = source_fields(params)
    if fields and drift["reference_field"] not in fields:
        fail("drift.reference_field", f"must be a survey field of data.source '{(params.get('data') or {}).get('source')}'"
                                      f" ({', '.join(sorted(fields))}), {got(drift['reference_field'])}")


DRIFT_SCHEMA = Schema(
    rules={"drift.reference_field": "str", "drift.tests": "map?", "drift.tests.column_method": "str",
           "drift.tests.alarm_rate": "open01", "drift.tests.column_threshold": "nonneg?",
           "drift.tests.drift_share": "fraction?", "drift.tests.embedding_method": "str",
           "drift.tests.embedding_threshold": "nonneg?", "drift.tests.embedding_bootstrap": "bool?",
           "drift.embedding_map": "bool", "drift.control_splits": "natural", "drift.seed": "int"},
    required={"drift": ("reference_field",)},
    checks={"drift": _check_drift})
