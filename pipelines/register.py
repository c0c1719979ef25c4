"""Stage register: per target and kind of input (multimodal: cutouts and catalogue fluxes, images,
catalogue), the result with the best validation proper score (params `registry.selection.metric`, CRPS
by default) among those whose calibrated validation densities pass the calibration rule becomes the
`candidate` of that kind's registered model (`galaxyprop-z`, `galaxyprop-z-images`,
`galaxyprop-z-catalogue`); every skipped result is logged with why.

DVC runs this stage on every repro (the registry is state its caches cannot restore). When the store
already holds reports/registered.json's candidates, registered from these very inputs (models, metrics,
data, params and code: `registry.stamp`), it says so and ends in a moment, before importing MLflow;
otherwise `registration` does the (idempotent) work."""

from __future__ import annotations

import json
import logging

from galaxyprop.calibration.params import CALIBRATION_SCHEMA
from galaxyprop.config import Stores
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.errors import exit_on_error
from galaxyprop.evaluation.params import EVALUATION_SCHEMA
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.heads import ALL_HEADS, head_module
from galaxyprop.provenance import code_digest, dvc_output_hash, file_md5
from galaxyprop.registry.params import REGISTRY_SCHEMA
from galaxyprop.registry.stamp import fingerprint, store_holds
from galaxyprop.spectra.params import SPECTRA_SCHEMA
from galaxyprop.tracking.integrity import backup_store, check_store
from galaxyprop.workspace import (
    BREAKDOWN,
    HEADLINE,
    METRICS,
    MODELS,
    PREPARED,
    REGISTERED,
    REGISTERED_SPECTRUM,
    VAL_METRICS,
)

from stage import stage_params

log = logging.getLogger("register")


def registration_inputs(params: dict, data_hash: str) -> str:
    """Fingerprint of everything a registration reads: the metrics, every trained model's files, the
    prepared data's DVC hash, the params and the code (this stage's and every head's)."""
    models = sorted(p for p in MODELS.rglob("*") if p.is_file() and p.suffix in (".joblib", ".json", ".pt"))
    return fingerprint([file_md5(p) for p in (METRICS, VAL_METRICS, BREAKDOWN)],
                       [(p.as_posix(), file_md5(p)) for p in models], data_hash, params,
                       code_digest(__file__, *(head_module(h) for h in ALL_HEADS)))


def registered_candidates() -> dict[str, str]:
    """Registered model name -> the version reports/registered*.json say is its candidate."""
    entries = []
    for path in (REGISTERED, REGISTERED_SPECTRUM):
        if not path.exists():
            return {"(no reports/registered.json yet)": ""}
        report = json.loads(path.read_text())
        entries += list(report.values()) if path == REGISTERED else [report]
    return {e["model"]: str(e["version"]) for e in entries if e.get("version") is not None}


@exit_on_error
def main() -> None:
    params = stage_params(REGISTRY_SCHEMA, TARGETS_SCHEMA, CALIBRATION_SCHEMA, FEATURES_SCHEMA, SPECTRA_SCHEMA,
                          EVALUATION_SCHEMA)
    stores = Stores.from_params(params)
    data_hash = dvc_output_hash(PREPARED) or "untracked"
    inputs = registration_inputs(params, data_hash)
    check_store(stores.tracking_uri)           # a damaged SQLite registry: one line, nothing written to it
    if HEADLINE.exists() and store_holds(stores.tracking_uri, stores.experiment, registered_candidates(), inputs):
        log.info("the registry holds reports/registered.json's candidates, registered from these inputs: "
                 "nothing to register")
        return
    from registration import register_all

    copy = backup_store(stores.tracking_uri)
    if copy is not None:
        log.info("store backed up to %s before registering", copy)
    register_all(params, data_hash, inputs)


if __name__ == "__main__":
    main()
