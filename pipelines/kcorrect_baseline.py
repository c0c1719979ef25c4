"""Stages kcorrect_specz and kcorrect_photoz: the astronomers' baseline, kcorrect on the survey bands
at the spectroscopic redshift (the oracle) or at galaxyprop's best photometric redshift (the fair
comparison for an image-only model).

The fit runs per photometric system (DESI: north and south have their own filter curves).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.io import write_json, write_parquet
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.evaluation.comparison import IMAGE_INPUTS
from galaxyprop.evaluation.metrics import objective_value, target_metrics
from galaxyprop.evaluation.params import EVALUATION_SCHEMA
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.heads.kcorrect_baseline import ANY_PHOTSYS, kcorrect_by_photsys
from galaxyprop.heads.params import BASELINES_SCHEMA
from galaxyprop.results import inputs_of, metrics_key, result_name
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import PREDICTIONS, RAW, baseline_summary, predictions_path, raw_images, result_files

from common import prediction_frame, prepared_bands, prepared_split
from stage import stage_params

log = logging.getLogger("kcorrect_baseline")
TARGET = "kcorr_r01"


def photo_z_source(choice: str, features: str, params: dict) -> tuple[str, pd.DataFrame]:
    """The z predictions to fit at: the named result, or among the z results learned from `features`
    (for the image embeddings: every image-only result, the cnn too) the one with the best validation metric."""
    metric, default = section(params, "targets.z.metric"), section(params, "features.default")
    results = {metrics_key(p.stem, default): pd.read_parquet(p) for p in result_files(PREDICTIONS, "z", ".parquet")}
    results = {k: v for k, v in results.items() if len(v)}
    if choice != "best":
        if choice not in results:
            raise GalaxypropError(f"baselines.kcorrect_photoz.redshift_from: no z predictions '{choice}' "
                                  f"(have {sorted(results)})")
        return choice, results[choice]
    allowed = IMAGE_INPUTS if features in IMAGE_INPUTS else (features,)
    results = {k: v for k, v in results.items() if inputs_of(k, default) in allowed}
    if not results:
        raise GalaxypropError(f"no z predictions from '{features}' features under {PREDICTIONS / 'z'}: "
                              "run their train stages first")

    def val_score(frame: pd.DataFrame) -> float:
        val = frame[frame[schema.SPLIT] == "val"]
        metrics = target_metrics("z", val["true"], val["prediction"], section(params, "targets.z.outlier_threshold"),
                                 section(params, "evaluation.eta_threshold"))
        return objective_value(metric, metrics[metric])

    best = min(results, key=lambda k: val_score(results[k]))
    return best, results[best]


def skip(head: str, reason: str) -> None:
    """A baseline that does not apply to the source (an image photo-z on a catalogue) records why, with an
    empty predictions file evaluate passes over, as the train stages do for a source they cannot use."""
    empty = prepared_split("test").iloc[:0]
    empty = empty if TARGET in empty else empty.assign(**{TARGET: pd.Series(dtype=float)})
    write_parquet(prediction_frame(empty, "test", TARGET, [], []), predictions_path(TARGET, head))
    write_json({"skipped": reason}, baseline_summary(head))
    log.info("%s skipped: %s", head, reason)


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redshift", choices=["specz", "photoz"], required=True)
    parser.add_argument("--features", default=None,
                        help="photoz: fit at the best photo-z learned from these features (default: features.default)")
    args = parser.parse_args()
    params = stage_params(BASELINES_SCHEMA, TARGETS_SCHEMA, EVALUATION_SCHEMA, FEATURES_SCHEMA)
    baseline = f"kcorrect_{args.redshift}"
    features = args.features or section(params, "features.default")
    head = result_name(baseline, features) if args.redshift == "photoz" else baseline
    config, bands = section(params, f"baselines.{baseline}"), prepared_bands()
    if config.get("bands"):
        missing = sorted(set(config["bands"]) - set(bands["bands"]))
        if missing:
            raise GalaxypropError(f"params baselines.{head}.bands: the source has no band {missing} "
                                  f"(it has {bands['bands']})")
        bands = {**bands, "bands": list(config["bands"])}
    if TARGET not in section(params, "train.targets"):
        skip(head, f"{TARGET} is not in train.targets: no prepared {TARGET} to compare with")
        return
    if args.redshift == "photoz" and features in IMAGE_INPUTS and raw_images(RAW) is None:
        skip(head, f"data source '{section(params, 'data.source')}' has no images: no image photo-z to fit at")
        return
    source, photo_z = (photo_z_source(config["redshift_from"], features, params) if args.redshift == "photoz"
                       else ("spectroscopic", None))
    with tracking.stage_run(Stores.from_params(params), f"baseline:{head}:{TARGET}",
                            params={"baseline": config, "redshift": source, **bands},
                            tags={"head": metrics_key(head, section(params, "features.default")), "target": TARGET}):
        frames, failures, no_redshift = [], {}, {}
        for split in ("val", "test"):
            frame = prepared_split(split)
            if photo_z is not None:   # the galaxies with a photo-z, fitted at it
                z = photo_z[photo_z[schema.SPLIT] == split].set_index(schema.ID)["prediction"]
                no_redshift[split] = int((~frame[schema.ID].isin(z.index)).sum())
                frame = frame[frame[schema.ID].isin(z.index)].reset_index(drop=True)
                redshift = np.clip(z.loc[frame[schema.ID]].to_numpy(float), 0.0, None)
            else:
                redshift = frame[schema.REDSHIFT].to_numpy(float)
            value, spread = kcorrect_by_photsys(frame, redshift, bands, config["n_mc"], config["seed"])
            photsys = frame[schema.PHOTSYS] if schema.PHOTSYS in frame else pd.Series(ANY_PHOTSYS, frame.index)
            failed = pd.Series(~np.isfinite(value)).groupby(photsys.to_numpy()).sum()
            failures[split] = {str(k): int(v) for k, v in failed.items()}
            frames.append(prediction_frame(frame, split, TARGET, value, spread))
        write_parquet(pd.concat(frames, ignore_index=True), predictions_path(TARGET, head))
        summary = {"redshift": source, "failed_fits": failures,
                   "failed_fits_total": sum(sum(v.values()) for v in failures.values()),
                   **({"no_photo_z": no_redshift} if photo_z is not None else {})}
        write_json(summary, baseline_summary(head))
        log.info("%s at %s redshift; kcorrect fits that failed (by split and PHOTSYS): %s", head, source, failures)
        tracking.log_metrics({"failed_fits": failures, "failed_fits_total": summary["failed_fits_total"]})


if __name__ == "__main__":
    main()
