"""Stage features: the catalogue-side feature sources of every split, keyed by id — photometry (every
band, and `photometry_grz` on the images' bands alone: the catalogue reference for image models), and
external embeddings when params name a file — each folder with the encoder that made it."""

from __future__ import annotations

import logging
from dataclasses import asdict

import pandas as pd

from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.io import save_object, write_json, write_parquet
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.features.external import PrecomputedEmbeddings, join_embeddings, read_external_embeddings
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import FEATURE_ENCODER, FEATURES, SKIPPED, feature_path

from common import prepared_bands, prepared_split, write_skipped
from stage import stage_params

log = logging.getLogger("features")


def photometry_features(config: dict, source: str) -> dict:
    """Magnitudes and colours of the configured bands (null: every band of the source); a source
    lacking one of them gets a `skipped.json` saying so."""
    available = prepared_bands()["bands"]
    bands = config.get("bands") or available
    unknown = sorted(set(bands) - set(available))
    if unknown and source == "photometry":
        raise GalaxypropError(f"features.photometry.bands {unknown} are not bands of this source ({available})")
    if unknown:
        write_skipped(FEATURES / source, f"bands {unknown} of features.{source}.bands are not bands of this source")
        return {}
    encoder = PhotometryFeatures(bands=tuple(bands))
    (FEATURES / source / SKIPPED).unlink(missing_ok=True)
    save_object(encoder, FEATURES / source / FEATURE_ENCODER)
    for split in schema.SPLITS:
        frame = prepared_split(split)
        matrix = pd.DataFrame(encoder.transform(frame), columns=encoder.names)
        matrix.insert(0, schema.ID, frame[schema.ID].to_numpy())
        write_parquet(matrix, feature_path(source, split))
    return {f"{source}.n_features": len(encoder.names)}


def external_features(config: dict) -> dict:
    """Join the external file with each split; ids without an embedding are dropped and counted."""
    folder = FEATURES / "external"
    if not config.get("path"):
        write_skipped(folder, "no external embeddings configured (params features.external.path)")
        return {}
    embeddings = read_external_embeddings(config["path"], config["embedding"], config.get("id_key"))
    (folder / "skipped.json").unlink(missing_ok=True)
    save_object(PrecomputedEmbeddings(embeddings.shape[1] - 1), folder / FEATURE_ENCODER)
    reports = {}
    for split in schema.SPLITS:
        joined, report = join_embeddings(prepared_split(split), embeddings, config.get("dim"))
        if report.n_matched == 0:
            log.warning("external embeddings: no id of split '%s' is in %s", split, config["path"])
        write_parquet(joined, folder / f"{split}.parquet")
        reports[split] = asdict(report)
        log.info("external embeddings, %s: %s", split, report.summary())
    write_json({"path": str(config["path"]), "dim": embeddings.shape[1] - 1, "splits": reports},
               folder / "join_report.json")
    return {f"external.{split}.{k}": v for split, r in reports.items() for k, v in r.items()}


@exit_on_error
def main() -> None:
    params = stage_params(FEATURES_SCHEMA)
    config = section(params, "features")
    with tracking.stage_run(Stores.from_params(params), "features",
                            params={"features": {k: config[k] for k in ("photometry", "photometry_grz", "external")}}):
        metrics = {**photometry_features(config["photometry"], "photometry"),
                   **photometry_features(config["photometry_grz"], "photometry_grz"),
                   **external_features(config["external"])}
        tracking.log_metrics(metrics)


if __name__ == "__main__":
    main()
