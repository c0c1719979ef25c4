"""Stage prepare: read the imported source into the layout, drop and count unusable rows, split."""

from __future__ import annotations

import logging
import re

from common import PREPARED, RAW, REPORTS

from galaxyprop import tracking
from galaxyprop.config import Stores, load_params, section
from galaxyprop.data.io import write_json, write_parquet
from galaxyprop.data.sources import load_source
from galaxyprop.data.splits import split_frame
from galaxyprop.errors import GalaxypropError, exit_on_error

log = logging.getLogger("prepare")


def metric_name(reason: str) -> str:
    return "dropped." + re.sub(r"[^A-Za-z0-9_.\-/ ]", "", reason)[:200].strip().replace(" ", "_")


@exit_on_error
def main() -> None:
    params = load_params()
    data, split = section(params, "data"), section(params, "split")
    with tracking.stage_run(Stores.from_params(params), "prepare", params={"data": data, "split": split}):
        source = load_source(data, RAW)
        frame, report = source.frame, source.report
        log.info("%s: %s", data["source"], report.summary())
        if len(frame) < 20:
            raise GalaxypropError(f"{RAW}: only {len(frame)} usable rows, too few to split")

        splits = split_frame(frame, split["fractions"], split["seed"], split.get("n_redshift_bins", 10))
        for name, part in splits.items():
            write_parquet(part, PREPARED / f"{name}.parquet")
        write_json(source.bands_metadata(), PREPARED / "bands.json")
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
