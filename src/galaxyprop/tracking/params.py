"""The schema of params `stores`: where MLflow (tracking, registry, artifacts) and Optuna keep their state."""

from __future__ import annotations

from galaxyprop.validation.rules import Schema

STORES_SCHEMA = Schema(
    rules={f"stores.{k}": "str" for k in ("tracking_uri", "artifact_location", "optuna_storage", "experiment_prefix")},
    required={"stores": ("tracking_uri", "artifact_location", "optuna_storage")})
