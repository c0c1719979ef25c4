"""params.yaml and the locations of the stores (overridable by environment variables)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from galaxyprop.errors import GalaxypropError


def load_params(path: str | Path = "params.yaml", validate: bool = True) -> dict:
    """params.yaml as a dict; `validate`: checked as a whole first (galaxyprop.validation), so that a bad
    value stops a stage or command with one line before it does anything."""
    path = Path(path)
    if not path.exists():
        raise GalaxypropError(f"{path}: params file not found (run from the project root)")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise GalaxypropError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(params, dict):
        raise GalaxypropError(f"{path}: expected a mapping of parameter groups")
    if validate:
        from galaxyprop.validation import validate_params

        validate_params(params)
    return params


def section(params: Mapping, dotted: str):
    """`params['a']['b']` for 'a.b', with a clear error naming the missing key."""
    node = params
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise GalaxypropError(f"params.yaml: missing '{dotted}'")
        node = node[key]
    return node


def params_hash(*parts: object) -> str:
    """Short, stable hash of parameter values (canonical JSON)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Stores:
    """Where MLflow (tracking, registry, artifacts) and Optuna keep their state."""

    tracking_uri: str
    artifact_location: str
    optuna_storage: str
    experiment: str

    @classmethod
    def from_params(cls, params: Mapping) -> Stores:
        stores = section(params, "stores")
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", stores["tracking_uri"])
        artifacts = os.environ.get("GALAXYPROP_ARTIFACT_LOCATION", stores["artifact_location"])
        optuna_storage = os.environ.get("OPTUNA_STORAGE", stores["optuna_storage"])
        for uri in (tracking_uri, optuna_storage):
            if uri.startswith("sqlite:///"):
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if "://" not in artifacts:
            artifacts = Path(artifacts).resolve().as_uri()
        experiment = f"{stores.get('experiment_prefix', 'galaxyprop')}-{section(params, 'data.source')}"
        return cls(tracking_uri, artifacts, optuna_storage, experiment)
