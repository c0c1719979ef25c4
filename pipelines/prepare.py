"""Stage prepare: read the imported source into the layout, drop and count unusable rows, split."""

from __future__ import annotations

import logging
import re

import numpy as np

from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.astroclip import DESI_WAVE, AstroclipFile
from galaxyprop.data.desi import IMAGE_ROW
from galaxyprop.data.io import write_json, write_parquet
from galaxyprop.data.params import DATA_SCHEMA, SPLIT_SCHEMA
from galaxyprop.data.sources import load_source, source_split
from galaxyprop.data.splits import split_frame
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.evaluation import data_plots
from galaxyprop.heads.params import TRAIN_SCHEMA
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import DATA_PLOTS, PREPARE_SUMMARY, PREPARED, RAW, raw_images

from common import save_figure
from stage import stage_params

log = logging.getLogger("prepare")


def draw_gallery(frame, path, n: int = 8) -> None:
    """Cutouts and spectra of `n` galaxies spread in redshift (sources with images only)."""
    picks = frame.sort_values(schema.REDSHIFT).iloc[np.linspace(0, len(frame) - 1, n).astype(int)]
    with AstroclipFile(raw_images(RAW)) as images:
        cutouts = images.images(picks[IMAGE_ROW].to_numpy())
        spectra, _ = images.spectra(picks[IMAGE_ROW].to_numpy())
    titles = [f"TARGETID {row[schema.ID]}  z = {row[schema.REDSHIFT]:.3f}  PHOTSYS {row[schema.PHOTSYS]}"
              + (f"  K(0.1r) = {row['kcorr_r01']:+.3f}" if "kcorr_r01" in row else "")
              + (f"  log M* = {row['logmstar']:.2f}" if "logmstar" in row else "") for _, row in picks.iterrows()]
    save_figure(data_plots.cutout_gallery(cutouts, DESI_WAVE, spectra, titles), path)


def file_split(frame) -> np.ndarray:
    """The image file's own train/test label of every frame row (`split: file`)."""
    path = raw_images(RAW)
    if path is None or IMAGE_ROW not in frame:
        raise GalaxypropError(f"{RAW}: split 'file' needs an image file with its own train/test split")
    with AstroclipFile(path) as images:
        labels, layout = images.file_split(), images.layout
    if labels is None:
        raise GalaxypropError(f"{path}: the {layout} AstroCLIP layout has no train/test split of its own; "
                              "set the source's split to 'random'")
    return labels[frame[IMAGE_ROW].to_numpy()]


def metric_name(reason: str) -> str:
    return "dropped." + re.sub(r"[^A-Za-z0-9_.\-/ ]", "", reason)[:200].strip().replace(" ", "_")


@exit_on_error
def main() -> None:
    params = stage_params(DATA_SCHEMA, SPLIT_SCHEMA, TARGETS_SCHEMA, TRAIN_SCHEMA)
    data, split = section(params, "data"), section(params, "split")
    with tracking.stage_run(Stores.from_params(params), "prepare", params={"data": data, "split": split,
                                                                          "targets": section(params, "targets")}):
        wanted = section(params, "train.targets")
        source = load_source(data, RAW, section(params, "targets"), wanted)
        frame, report = source.frame, source.report
        log.info("%s: %s", data["source"], report.summary())
        missing = [t for t in wanted if t not in source.targets]
        if missing:
            log.info("%s has no column for the targets %s: they are skipped", data["source"], missing)
        if len(frame) < 20:
            raise GalaxypropError(f"{RAW}: only {len(frame)} usable rows, too few to split")

        own = None
        if source_split(data) == "file":
            own = source.file_split if source.file_split is not None else file_split(frame)
        splits = split_frame(frame, split["fractions"], split["seed"], split.get("n_redshift_bins", 10), own,
                             split.get("n_brightness_bins", 3), split.get("by_field", True))
        for name, part in splits.items():
            write_parquet(part, PREPARED / f"{name}.parquet")
        write_json(source.bands_metadata(), PREPARED / "bands.json")
        DATA_PLOTS.mkdir(parents=True, exist_ok=True)
        if IMAGE_ROW in frame:
            draw_gallery(frame, DATA_PLOTS / "gallery.png")
            tracking.log_artifacts([DATA_PLOTS / "gallery.png"], artifact_path="plots")
        summary = {**report.as_dict(), "split_sizes": {k: len(v) for k, v in splits.items()},
                   "targets": source.targets, "targets_missing": missing}
        write_json(summary, PREPARE_SUMMARY)
        tracking.log_metrics({"n_input": report.n_input, "n_kept": report.n_kept,
                              "n_dropped": report.n_dropped,
                              **{metric_name(k): v for k, v in report.dropped.items()},
                              **{f"nondetections_{band}": n for band, n in report.nondetections.items()},
                              **{f"n_{k}": len(v) for k, v in splits.items()}})
        tracking.log_artifacts([PREPARE_SUMMARY])
    print(report.summary())


if __name__ == "__main__":
    main()
