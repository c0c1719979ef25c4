"""Stage kcorrect_specz: the astronomers' baseline, kcorrect on the survey bands at the spectroscopic redshift.

The fit runs per photometric system (DESI: north and south have their own filter curves).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from common import REPORTS, prediction_frame, predictions_path, prepared_bands, prepared_split

from galaxyprop import tracking
from galaxyprop.config import Stores, load_params, section
from galaxyprop.data import schema
from galaxyprop.data.io import write_json, write_parquet
from galaxyprop.errors import exit_on_error
from galaxyprop.heads.kcorrect_baseline import KcorrectHead

log = logging.getLogger("kcorrect_specz")
TARGET, HEAD = "kcorr_r01", "kcorrect_specz"
RESPONSE_OUT, BAND_SHIFT = "sdss_r0", 0.1      # the target K(^{0.1}r)
ANY_PHOTSYS = "*"


def predict_by_photsys(frame: pd.DataFrame, bands: dict, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """kcorrect fits of every row with the filter curves of its own photometric system."""
    value, spread = np.full(len(frame), np.nan), np.full(len(frame), np.nan)
    photsys = frame[schema.PHOTSYS].to_numpy() if schema.PHOTSYS in frame else np.full(len(frame), ANY_PHOTSYS)
    for system in np.unique(photsys):
        rows = photsys == system
        responses = [bands["responses"][b].get(system, bands["responses"][b].get(ANY_PHOTSYS))
                     for b in bands["bands"]]
        mapped = bands["responses"][bands["label_band"]]
        head = KcorrectHead(tuple(responses), RESPONSE_OUT, mapped.get(system, mapped.get(ANY_PHOTSYS)),
                            BAND_SHIFT, config["n_mc"], config["seed"])
        X = KcorrectHead.design_matrix(frame[rows], bands["bands"], frame[schema.REDSHIFT].to_numpy()[rows])
        prediction = head.fit(X).predict(X)
        value[rows], spread[rows] = prediction.value, prediction.spread
    return value, spread


@exit_on_error
def main() -> None:
    params = load_params()
    config, bands = section(params, f"baselines.{HEAD}"), prepared_bands()
    with tracking.stage_run(Stores.from_params(params), f"baseline:{HEAD}:{TARGET}",
                            params={"baseline": config, **bands}, tags={"head": HEAD, "target": TARGET}):
        frames, failures = [], {}
        for split in ("val", "test"):
            frame = prepared_split(split)
            value, spread = predict_by_photsys(frame, bands, config)
            failures[split] = int((~np.isfinite(value)).sum())
            frames.append(prediction_frame(frame, split, TARGET, value, spread))
        write_parquet(pd.concat(frames, ignore_index=True), predictions_path(TARGET, HEAD))
        write_json({"failed_fits": failures}, REPORTS / f"{HEAD}.json")
        log.info("kcorrect fits that failed: %s", failures)
        tracking.log_metrics({f"failed_fits_{k}": v for k, v in failures.items()})


if __name__ == "__main__":
    main()
