"""Stage kcorrect_specz: the astronomers' baseline, kcorrect on ugriz at the spectroscopic redshift."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from common import REPORTS, prediction_frame, predictions_path, prepared_split

from galaxyprop import tracking
from galaxyprop.config import Stores, load_params, section
from galaxyprop.data import schema
from galaxyprop.data.catalog import CatalogSpec
from galaxyprop.data.io import write_json, write_parquet
from galaxyprop.errors import exit_on_error
from galaxyprop.heads.kcorrect_baseline import KcorrectHead

log = logging.getLogger("kcorrect_specz")
TARGET, HEAD = "kcorr_r01", "kcorrect_specz"


@exit_on_error
def main() -> None:
    params = load_params()
    config, label = section(params, f"baselines.{HEAD}"), section(params, "labels.kcorr_r01")
    spec = CatalogSpec.from_params(section(params, "data"))
    bands = list(config["bands"])
    head = KcorrectHead(tuple(spec.band(b).response for b in bands), label["response_out"],
                        label["response_map"], label["band_shift"], config["n_mc"], config["seed"])
    with tracking.stage_run(Stores.from_params(params), f"baseline:{HEAD}:{TARGET}",
                            params={"baseline": config}, tags={"head": HEAD, "target": TARGET}):
        frames, failures = [], {}
        for split in ("val", "test"):
            frame = prepared_split(split)
            X = KcorrectHead.design_matrix(frame, bands, frame[schema.REDSHIFT].to_numpy())
            prediction = head.fit(X).predict(X)
            failures[split] = int((~np.isfinite(prediction.value)).sum())
            frames.append(prediction_frame(frame, split, TARGET, prediction.value, prediction.spread))
        write_parquet(pd.concat(frames, ignore_index=True), predictions_path(TARGET, HEAD))
        write_json({"failed_fits": failures}, REPORTS / f"{HEAD}.json")
        log.info("kcorrect fits that failed: %s", failures)
        tracking.log_metrics({f"failed_fits_{k}": v for k, v in failures.items()})


if __name__ == "__main__":
    main()
