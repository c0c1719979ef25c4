"""Stage spectra: a galaxy's spectrum from its image (Wu & Peek), by predicting a compact latent of the
spectrum and decoding it onto the DESI grid.

The latent (`spectra.latent`) is fitted on the training spectra; each head in `spectra.heads` learns it
(with the redshift and the spectrum's normalisation the decoder needs) from each feature source in
`spectra.features`. Reported on the test split (reports/spectra.json): the latent MSE relative to the
training-mean predictor (variance-weighted and plain), the reduced chi^2 of the decoded spectra
against the observed ones, and the recovery of Dn4000 and of the H-alpha equivalent width, beside the
floor the latent itself leaves. The best result on the cutouts alone (`spectra.registry.features`) is
what `galaxyprop-spectrum` serves.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.astroclip import DESI_WAVE, AstroclipFile
from galaxyprop.data.desi import IMAGE_ROW
from galaxyprop.data.io import load_object, save_object, write_json
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.lanes import run_in_lanes
from galaxyprop.resources import process_plan
from galaxyprop.results import ResultName, result_name
from galaxyprop.spectra import evaluation
from galaxyprop.spectra.evaluation import usable
from galaxyprop.spectra.gallery import gallery_figure, pick_gallery
from galaxyprop.spectra.heads import make_spectrum_head
from galaxyprop.spectra.latent import SpectralLatent
from galaxyprop.spectra.model import SpectrumPredictor
from galaxyprop.spectra.params import SPECTRA_SCHEMA
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import (
    FEATURE_ENCODER,
    FEATURES,
    RAW,
    SKIPPED,
    SPECTRA_PLOTS,
    SPECTRA_REPORT,
    SPECTRUM_MODELS,
    SPECTRUM_SELECTED,
    raw_images,
    timings_path,
)

from common import feature_split, prepared_split, save_figure, write_skipped
from stage import stage_params

log = logging.getLogger("spectra")


def read_spectra(file: AstroclipFile, frame) -> tuple[np.ndarray, np.ndarray]:
    """The observed flux and inverse variance of the frame's galaxies (ivar 1 where the file has none)."""
    flux, ivar = file.spectra(frame[IMAGE_ROW].to_numpy())
    return flux.astype(np.float32), (np.ones_like(flux) if ivar is None else ivar).astype(np.float32)


def features_of(source: str, frames: dict) -> dict | None:
    """Each split's feature matrix aligned to the prepared rows, or None where the source was not built."""
    if (FEATURES / source / SKIPPED).exists():
        return None
    out = {}
    for split, frame in frames.items():
        table = feature_split(source, split).set_index(schema.ID)
        missing = ~frame[schema.ID].isin(table.index)
        if missing.any():
            raise GalaxypropError(f"feature source '{source}' lacks {int(missing.sum())} galaxies of the {split} split")
        out[split] = table.loc[frame[schema.ID]].to_numpy(np.float32)
    return out


@exit_on_error
def main() -> None:
    params = stage_params(SPECTRA_SCHEMA, FEATURES_SCHEMA)
    spec = section(params, "spectra")
    images = raw_images(RAW)
    if images is None:
        write_skipped(SPECTRUM_MODELS, f"data source '{section(params, 'data.source')}' has no spectra")
        write_json({"skipped": "the data source has no images and spectra"}, SPECTRA_REPORT)
        SPECTRA_PLOTS.mkdir(parents=True, exist_ok=True)
        return
    (SPECTRUM_MODELS / SKIPPED).unlink(missing_ok=True)
    frames = {split: prepared_split(split) for split in schema.SPLITS}
    start = time.perf_counter()
    with AstroclipFile(images) as file:
        observed = {split: read_spectra(file, frame) for split, frame in frames.items()}
    z = {split: frame[schema.REDSHIFT].to_numpy(float) for split, frame in frames.items()}
    latent = SpectralLatent(**spec["latent"]).fit(*observed["train"], z["train"])
    save_object(latent, SPECTRUM_MODELS / "latent.joblib")
    targets = {split: evaluation.latent_targets(latent, *observed[split], z[split]) for split in frames}
    fields = {split: frame[schema.PHOTSYS].to_numpy() if schema.PHOTSYS in frame else None
              for split, frame in frames.items()}
    report = {"n": {s: len(f) for s, f in frames.items()}, "latent": evaluation.latent_summary(latent, targets),
              "floor": evaluation.floor_metrics(latent, *observed["test"], z["test"]), "results": {}}
    log.info("latent: %s; floor %s", report["latent"], report["floor"])
    train, val = usable(targets["train"]), usable(targets["val"])

    def fit(name: str, head: str, source: str, features: dict, metrics: Path) -> None:
        """One head on one source: its predictor in its model folder, its metrics in `metrics`."""
        fitted = make_spectrum_head(head, **(spec.get(head) or {})).fit(
            features["train"][train], targets["train"][train], features["val"][val], targets["val"][val])
        predictor = SpectrumPredictor(load_object(FEATURES / source / FEATURE_ENCODER, object), fitted, latent)
        # the spread scaled on validation (its coverage there is 0.683 by construction; test says)
        predictor.calibrate_spread(features["val"][val], targets["val"][val])
        result = evaluation.result_metrics(predictor, features, targets, observed, z, fields)
        save_object(predictor, SPECTRUM_MODELS / name / "predictor.joblib")
        write_json(result, metrics)
        log.info("%s: test latent_mse_relative %.3f (unweighted %.3f), chi2 %.3g", name,
                 result["test"]["latent_mse_relative"], result["test"]["latent_mse_relative_unweighted"],
                 result["test"]["chi2_median"])

    jobs, tmp = [], Path(tempfile.mkdtemp(prefix="galaxyprop-spectra-"))
    for source in spec["features"]:
        features = features_of(source, frames)
        if features is None:
            log.info("feature source '%s' was not built: skipped", source)
            continue
        jobs += [(name, functools.partial(fit, name, head, source, features, tmp / f"{name}.json"))
                 for head in spec["heads"] for name in [result_name(head, source)]]
    # each fit in a process of its own, one per idle core (galaxyprop.lanes), before the MLflow run opens;
    # the network fits (~10 s each) first, so that the knn fits (~2 s) fill the lanes they leave
    try:
        run_in_lanes(sorted(jobs, key=lambda job: ResultName.parse(job[0]).head == "knn"), process_plan())
        report["results"] = {name: json.loads((tmp / f"{name}.json").read_text()) for name, _ in jobs}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    predictors = {name: load_object(SPECTRUM_MODELS / name / "predictor.joblib", SpectrumPredictor) for name, _ in jobs}
    with tracking.stage_run(Stores.from_params(params), "spectra", params={"spectra": spec}):
        if not predictors:
            raise GalaxypropError(f"no feature source of spectra.features {spec['features']} was built")
        served = [n for n in predictors if ResultName.parse(n).features in spec["registry"]["features"]]
        if served:
            best = min(served, key=lambda n: report["results"][n]["val"]["latent_mse_relative"])
            report["selected"] = best
            write_json({"result": best, "features": ResultName.parse(best).features,
                        "val": report["results"][best]["val"], "test": report["results"][best]["test"]},
                       SPECTRUM_SELECTED)
            test = frames["test"]
            with np.errstate(divide="ignore", invalid="ignore"):   # g - r: red and blue galaxies alike
                colour = -2.5 * np.log10(test[schema.flux_column("g")] / test[schema.flux_column("r")]).to_numpy()
            picks = pick_gallery(z["test"], np.nan_to_num(colour), int(spec["gallery"]))
            with AstroclipFile(images) as file:
                gallery_rows = test.iloc[picks]
                cutouts = file.cutouts(gallery_rows[IMAGE_ROW].to_numpy())     # (N, 3, H, W), as models take them
                stamps = file.images(gallery_rows[IMAGE_ROW].to_numpy())       # (N, H, W, 3), as plotted
            predicted = predictors[best].predict_spectra(cutouts, n_samples=int(spec["n_samples"]))
            log.info("gallery: %d galaxies from %s", len(picks), best)
            flux, ivar = (a[picks] for a in observed["test"])
            labels = [f"{best}: TARGETID {row[schema.ID]}  predicted z {z_pred:.3f}"
                      for (_, row), z_pred in zip(gallery_rows.iterrows(), predicted["z"], strict=True)]
            save_figure(gallery_figure(stamps, DESI_WAVE, flux, ivar, predicted["flux"], predicted["flux_std"],
                                       z["test"][picks], labels), SPECTRA_PLOTS / "gallery.png")
        save_figure(evaluation.results_figure(report), SPECTRA_PLOTS / "latent_mse.png")
        write_json(report, SPECTRA_REPORT)
        tracking.log_metrics({n: r["test"] for n, r in report["results"].items()}, prefix="test.")
        tracking.log_metrics(report["floor"], prefix="floor.")
        tracking.log_artifacts([SPECTRA_REPORT])
        tracking.log_artifacts([SPECTRA_PLOTS], artifact_path="plots/spectra")
        write_json({"seconds": time.perf_counter() - start}, timings_path("spectra"))


if __name__ == "__main__":
    main()
