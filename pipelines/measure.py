"""Stage measure: the feature source `measured`, photometry and morphology measured on every split's
cutouts with sep (Kron and aperture fluxes, half-light radii, shape), keyed by id, with the encoder
that made it; a registered model on it takes the cutouts alone."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.astroclip import AstroclipFile
from galaxyprop.data.desi import IMAGE_ROW
from galaxyprop.data.io import save_object, write_json, write_parquet
from galaxyprop.errors import exit_on_error
from galaxyprop.features.measured import MeasuredFeatures
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import FEATURE_ENCODER, FEATURES, RAW, SKIPPED, feature_path, raw_images, timings_path

from common import prepared_split, write_skipped
from stage import stage_params

log = logging.getLogger("measure")
SOURCE = "measured"


def measure_split(file: AstroclipFile, rows: np.ndarray, encoder: MeasuredFeatures, chunk: int, split: str) -> np.ndarray:
    """The measured features of `rows` of the image file, `chunk` cutouts at a time (constant memory)."""
    out = np.empty((len(rows), len(encoder.names)), np.float32)
    for start in tqdm(range(0, len(rows), chunk), desc=f"measure {split}", unit="chunk"):
        block = rows[start:start + chunk]
        out[start:start + len(block)] = encoder.transform(file.cutouts(block))
    return out


@exit_on_error
def main() -> None:
    params = stage_params(FEATURES_SCHEMA)
    config = dict(section(params, "features.measured"))
    chunk = int(config.pop("chunk_size"))
    folder = FEATURES / SOURCE
    images = raw_images(RAW)
    if images is None:
        write_skipped(folder, f"data source '{section(params, 'data.source')}' has no images")
        return
    encoder = MeasuredFeatures(**config)
    with tracking.stage_run(Stores.from_params(params), "measure", params={"measured": config},
                            tags={"features": SOURCE}), AstroclipFile(images) as file:
        (folder / SKIPPED).unlink(missing_ok=True)
        save_object(encoder, folder / FEATURE_ENCODER)
        start, n = time.perf_counter(), 0
        for split in schema.SPLITS:
            frame = prepared_split(split)
            matrix = measure_split(file, frame[IMAGE_ROW].to_numpy(), encoder, chunk, split)
            table = pd.DataFrame(matrix, columns=encoder.names)
            table.insert(0, schema.ID, frame[schema.ID].to_numpy())
            write_parquet(table, feature_path(SOURCE, split))
            n += len(frame)
        seconds = time.perf_counter() - start
        write_json({"seconds": round(seconds, 2), "cutouts_per_s": round(n / seconds, 1)}, timings_path("measure"))
        log.info("measured %d cutouts in %.1f s (%.0f per s), %d features", n, seconds, n / seconds, len(encoder.names))
        tracking.log_metrics({"n_features": len(encoder.names), "measure_seconds": seconds, "cutouts_per_s": n / seconds})


if __name__ == "__main__":
    main()
