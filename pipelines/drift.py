"""Stage drift: the reference field's training galaxies against every other field and against its
own held-out test galaxies (the no-drift control), with the registered candidates' predictions;
and the detector's false-alarm rate over random splits of the reference field."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.io import write_json
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.evaluation.params import EVALUATION_SCHEMA
from galaxyprop.lanes import run_in_lanes
from galaxyprop.monitoring.drift import P_VALUE_TESTS, DriftSettings, compare, false_alarm_rate
from galaxyprop.monitoring.params import DRIFT_SCHEMA
from galaxyprop.monitoring.samples import field_mask, field_names, predict, to_sample
from galaxyprop.registry import versions as registry
from galaxyprop.registry.promotion import metric_function
from galaxyprop.resources import process_plan
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import DRIFT, DRIFT_PLOTS, FEATURES, REGISTERED, SKIPPED

from common import model_inputs, prepared_bands, prepared_split, save_figure
from stage import stage_params

HTML = DRIFT / "html"
PLOTS = DRIFT_PLOTS
log = logging.getLogger("drift")


def galaxies() -> pd.DataFrame:
    """Every prepared galaxy with its split."""
    return pd.concat([prepared_split(s).assign(**{schema.SPLIT: s}) for s in schema.SPLITS], ignore_index=True)


def image_embeddings(frame: pd.DataFrame) -> np.ndarray | None:
    """The embed stage's image embeddings of these galaxies (None for a source without images)."""
    if (FEATURES / "image" / SKIPPED).exists():
        return None
    table = pd.concat([pd.read_parquet(FEATURES / "image" / f"{s}.parquet") for s in schema.SPLITS])
    return table.set_index(schema.ID).loc[frame[schema.ID]].to_numpy(np.float32)


def candidate_predictions(frame: pd.DataFrame, stores: Stores) -> pd.DataFrame | None:
    """Each target's registered candidates (reports/registered.json) on these galaxies: the multimodal
    model's predictions, or the image model's, or the catalogue model's, the first registered. Each
    target's models load and predict in a process of their own, one per idle core (`galaxyprop.lanes`;
    called before the stage opens its MLflow run: each process opens its own connection)."""
    registered = json.loads((REGISTERED).read_text())
    models: dict[str, list] = {}
    for model, entry in registered.items():
        if entry["version"]:
            models.setdefault(entry.get("target", model), []).append((model, entry["version"]))
    # a source with images registers image models: their cutouts are read once (each model loads when tried)
    needs_images = any(entry.get("inputs") in ("images", "multimodal") for entry in registered.values()
                       if entry["version"])
    cutouts = model_inputs("images", frame, "image") if needs_images else None

    with tempfile.TemporaryDirectory() as tmp:
        def job(target: str) -> None:
            tracking.use_stores(stores)
            skipped: dict[str, str] = {}
            out = predict({target: models[target]}, frame, cutouts, skipped, progress=True,
                          load=lambda nv: registry.load_model(*nv))
            write_json(skipped, Path(tmp) / f"{target}.skipped.json")
            if out is not None:
                np.save(Path(tmp) / f"{target}.npy", out[target].to_numpy(float))

        tracking.preload(stores)
        run_in_lanes([(f"predicting {t}", functools.partial(job, t)) for t in models], process_plan())
        skipped = {k: v for t in models for k, v in json.loads((Path(tmp) / f"{t}.skipped.json").read_text()).items()}
        predictions = {t: np.load(Path(tmp) / f"{t}.npy") for t in models if (Path(tmp) / f"{t}.npy").exists()}
    if skipped:
        raise GalaxypropError(f"{REGISTERED} names models that cannot take this pipeline's galaxies "
                              f"(the registry and the workspace disagree; rerun `dvc repro -f register`): {skipped}")
    return pd.DataFrame(predictions) if predictions else None


@exit_on_error
def main() -> None:
    params = stage_params(DRIFT_SCHEMA, TARGETS_SCHEMA, EVALUATION_SCHEMA)
    spec = section(params, "drift")
    settings = DriftSettings.from_params(spec.get("tests") or {})
    reference_field = spec["reference_field"]

    frame, stores = galaxies(), Stores.from_params(params)
    predictions = candidate_predictions(frame, stores)   # before the run: forked processes (lanes)
    with tracking.stage_run(stores, "drift", params={"drift": spec}):
        bands = prepared_bands()["bands"]
        every = to_sample("all", frame, bands, image_embeddings(frame), predictions, targets=params["targets"])
        split, names = frame[schema.SPLIT].to_numpy(), field_names(frame)
        if reference_field not in names and len(set(names)) == 1:
            log.info("no field '%s' in this source: its one field '%s' is the reference", reference_field, names[0])
            reference_field = names[0]
        in_reference = field_mask(frame, reference_field)
        reference = every.take(np.flatnonzero(in_reference & (split == "train")), reference_field)
        fields = sorted(set(names) - {reference_field})
        pairs = [(reference, every.take(np.flatnonzero((names == f) & (split == "test")), f)) for f in fields]
        pairs.append((dataclasses.replace(reference, name=f"{reference_field}_train"),
                      every.take(np.flatnonzero(in_reference & (split == "test")), f"{reference_field}_test")))

        shutil.rmtree(HTML, ignore_errors=True)
        summary = {}
        for ref, cur in pairs:
            comparison = compare(ref, cur, settings, embedding_map=bool(spec.get("embedding_map")),
                                 metrics_of=metric_function(params))
            comparison.save_html(HTML / f"{comparison.name}.html")
            summary[comparison.name] = comparison.verdict
            log.info("%s: detected=%s (share of drifted columns %s, embedding score %s)", comparison.name,
                     comparison.verdict["detected"], comparison.verdict.get("share_drifted"),
                     comparison.verdict.get("embedding_drift_score"))
        control_pair = pairs[-1]
        control = false_alarm_rate(every.take(np.flatnonzero(in_reference)), len(control_pair[0]),
                                   len(control_pair[1]), int(spec["control_splits"]), settings,
                                   seed=int(spec.get("seed", 0)), progress=True)
        log.info("control: %d random splits of %s, false-alarm rate %.2f", control["n_splits"], reference_field,
                 control["false_alarm_rate"])

        write_json(summary, DRIFT / "summary.json")
        write_json(control, DRIFT / "control.json")
        from galaxyprop.evaluation.plots import drift_scores

        save_figure(drift_scores(summary, settings.column_method, settings.column_method in P_VALUE_TESTS),
                    PLOTS / "drift_scores.png")
        tracking.log_metrics(summary)
        tracking.log_metrics(control, prefix="control.")
        tracking.log_artifacts([DRIFT], "drift")
        tracking.log_artifacts([PLOTS], "plots/drift")


if __name__ == "__main__":
    main()
