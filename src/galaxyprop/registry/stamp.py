"""Whether the registry already holds what the register stage would write, answered in a moment.

The register stage runs on every `dvc repro` (the registry is state DVC cannot cache or restore), so
its answer to "nothing new" must be instant: a fingerprint of the stage's inputs is kept as a tag of the
project's MLflow experiment, and each registered model's `candidate` alias is compared with
reports/registered.json, both read straight from a sqlite store (no MLflow import). A deleted store, a
moved alias, an interrupted registration or any changed input fails the comparison, and the stage
does its full, idempotent registration. A server store is not read this way: there the stage always
does the full registration.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path

#: The experiment tag holding the fingerprint of the inputs of the last completed registration.
INPUTS_TAG = "galaxyprop.registered_inputs"
CANDIDATE = "candidate"


def fingerprint(*parts: object) -> str:
    """sha256 of the parts as canonical JSON (bytes as their sha256)."""
    def plain(value):
        return hashlib.sha256(value).hexdigest() if isinstance(value, bytes) else str(value)

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=plain).encode()).hexdigest()


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` store, or None for any other store."""
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def store_holds(tracking_uri: str, experiment: str, candidates: Mapping[str, str], inputs: str) -> bool:
    """True when the store's experiment carries the `inputs` fingerprint and every registered model in
    `candidates` (name -> version) has its `candidate` alias on that version; False otherwise, and for
    a store this module cannot read (a server, a missing file, another schema)."""
    path = sqlite_file(tracking_uri)
    if path is None or not path.is_file():
        return False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tag = db.execute("SELECT t.value FROM experiment_tags t JOIN experiments e "
                             "ON t.experiment_id = e.experiment_id WHERE e.name = ? AND t.key = ? "
                             "AND e.lifecycle_stage = 'active'", (experiment, INPUTS_TAG)).fetchone()
            if tag is None or tag[0] != inputs:
                return False
            for name, version in candidates.items():
                row = db.execute("SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                                 (name, CANDIDATE)).fetchone()
                if row is None or str(row[0]) != str(version):
                    return False
    except sqlite3.Error:
        return False
    return True


def mark_registered(experiment_id: str, inputs: str) -> None:
    """Record, after a completed registration, the fingerprint of the inputs it registered."""
    from mlflow.tracking import MlflowClient

    MlflowClient().set_experiment_tag(experiment_id, INPUTS_TAG, inputs)
