"""Stage prepare: read and clean the catalogue, compute the reference labels, split."""

from __future__ import annotations

import logging
import re

import numpy as np
from common import PREPARED, REPORTS

from galaxyprop import tracking
from galaxyprop.config import Stores, load_params, section
from galaxyprop.data import schema
from galaxyprop.data.catalog import CatalogSpec, read_catalog
from galaxyprop.data.io import write_json, write_parquet
from galaxyprop.data.splits import split_frame
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.physics.kcorrect_fit import fit_kcorrection

log = logging.getLogger("prepare")


def reference_kcorrection(frame, spec: CatalogSpec, label: dict) -> np.ndarray:
    """K(^{0.1}r) from kcorrect fitted on every valid band with the spectroscopic redshift."""
    bands = label["bands"]
    responses = tuple(spec.band(b).response for b in bands)
    if None in responses:
        raise GalaxypropError("params labels.kcorr_r01.bands: every band needs a 'response' in data.bands")
    flux = frame[[schema.flux_column(b) for b in bands]].to_numpy()
    ivar = frame[[schema.ivar_column(b) for b in bands]].to_numpy()
    result = fit_kcorrection(flux, ivar, frame[schema.REDSHIFT].to_numpy(), responses,
                             label["response_out"], label["response_map"], label["band_shift"])
    return result.kcorrection


def metric_name(reason: str) -> str:
    return "dropped." + re.sub(r"[^A-Za-z0-9_.\-/ ]", "", reason)[:200].strip().replace(" ", "_")


@exit_on_error
def main() -> None:
    params = load_params()
    data, split = section(params, "data"), section(params, "split")
    spec = CatalogSpec.from_params(data)
    with tracking.stage_run(Stores.from_params(params), "prepare",
                            params={"data": data, "labels": params.get("labels"), "split": split}):
        frame, report = read_catalog(data["raw"], spec, data.get("max_rows"), data.get("seed", 0))
        log.info("%s: %s", data["raw"], report.summary())

        frame["kcorr_r01"] = reference_kcorrection(frame, spec, section(params, "labels.kcorr_r01"))
        failed = ~np.isfinite(frame["kcorr_r01"].to_numpy())
        if failed.any():
            report.dropped["kcorrect reference fit failed"] += int(failed.sum())
            report.n_kept -= int(failed.sum())
            frame = frame[~failed].reset_index(drop=True)
            log.info("dropped %d rows whose reference kcorrect fit failed", failed.sum())
        if len(frame) < 20:
            raise GalaxypropError(f"{data['raw']}: only {len(frame)} usable rows, too few to split")

        splits = split_frame(frame, split["fractions"], split["seed"], split.get("n_redshift_bins", 10))
        for name, part in splits.items():
            write_parquet(part, PREPARED / f"{name}.parquet")
        summary = {**report.as_dict(), "split_sizes": {k: len(v) for k, v in splits.items()}}
        write_json(summary, REPORTS / "prepare.json")
        tracking.log_metrics({"n_input": report.n_input, "n_kept": report.n_kept,
                              "n_dropped": report.n_dropped,
                              **{metric_name(k): v for k, v in report.dropped.items()},
                              **{f"n_{k}": len(v) for k, v in splits.items()}})
        tracking.log_artifacts([REPORTS / "prepare.json"])
    print(report.summary())


if __name__ == "__main__":
    main()
