"""Stage train (head x target), on each feature source the head is trained on (one process for them
all: a stage's start costs about as much as a small head's fit): tune the head with Optuna on the
validation split (one nested MLflow run per trial, with its curves), keep the best model, calibrate
its densities on the validation split, predict val and test, and write both splits' densities (raw
and calibrated).

Feature heads (knn, gbt, mlp, clap) learn from a feature source; image heads (cnn) from the cutouts,
multimodal heads (cnn_mm) from the cutouts and the catalogue photometry together.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import json
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from galaxyprop.calibration import CalibrationSettings
from galaxyprop.calibration.params import CALIBRATION_SCHEMA
from galaxyprop.config import Stores, params_hash, section
from galaxyprop.data import schema
from galaxyprop.data.density_file import write_densities
from galaxyprop.data.io import load_object, write_json, write_parquet
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.evaluation.densities import Grid, quantiles, resample
from galaxyprop.evaluation.metrics import density_metrics, objective_value, target_metrics
from galaxyprop.evaluation.params import EVALUATION_SCHEMA
from galaxyprop.features.images import Cutouts
from galaxyprop.features.multimodal import CutoutsAndPhotometry, ImagesAndFeatures
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.heads import IMAGE_HEADS, MULTIMODAL_HEADS, head_class, head_module, make_head
from galaxyprop.heads.base import Head
from galaxyprop.heads.params import HEADS_SCHEMA, TRAIN_SCHEMA
from galaxyprop.lanes import run_in_lanes
from galaxyprop.provenance import code_digest, dvc_output_hash
from galaxyprop.registry.predictor import QUANTILES, Predictor
from galaxyprop.resources import ThreadPlan, process_plan, thread_plan
from galaxyprop.results import CUTOUTS, IMAGE_HEAD_INPUTS, MULTIMODAL_INPUTS, metrics_key, result_name
from galaxyprop.tracking import runs as tracking
from galaxyprop.tracking.tuning import (
    FINISHED,
    TUNING_SCHEMA,
    create_storage,
    hyperparameters,
    make_pruner,
    pruning_callback,
    tune,
)
from galaxyprop.workspace import (
    FEATURE_ENCODER,
    FEATURES,
    PREPARED,
    RAW,
    SKIPPED,
    densities_path,
    head_folders,
    model_dir,
    predictions_path,
    raw_images,
    timings_path,
)

from common import prediction_frame, prepared_bands, prepared_split, split_fields, split_inputs, write_skipped
from stage import stage_params

log = logging.getLogger("train")


def digest(*arrays) -> str:
    """sha256 of the inputs' bytes (a multimodal head's cutouts and features each)."""
    sha = hashlib.sha256()
    for array in arrays:
        for part in (array.images, array.features) if isinstance(array, ImagesAndFeatures) else (array,):
            sha.update(np.ascontiguousarray(part).tobytes())
    return sha.hexdigest()


def prepare_stores(stores: Stores) -> None:
    """The tracking store with its experiment, and the Optuna storage's tables."""
    tracking.connect(stores)
    create_storage(stores.optuna_storage)


def skip_unavailable(target: str, name: str, source: str, features: str, listed: list[str] | None) -> bool:
    """Image and multimodal heads need cutouts, feature heads a feature source that was built: where
    they are missing (e.g. a catalogue source) record why, and leave empty predictions; likewise a
    target the source has no column for, and an image head's inputs that the target's `features`
    (`listed`) leave out."""
    prepared = prepared_bands().get("targets")
    if prepared is not None and target not in prepared:
        reason = f"data source '{source}' has no column for the target '{target}'"
    elif listed and features not in listed:
        reason = f"targets.{target}.features does not list '{features}'"
    elif features in IMAGE_HEAD_INPUTS:
        if raw_images(RAW) is not None:
            return False
        reason = f"data source '{source}' has no images"
    else:
        skipped = FEATURES / features / SKIPPED
        if not skipped.exists():
            return False
        reason = f"feature source '{features}' was not built: {json.loads(skipped.read_text())['reason']}"
    write_skipped(model_dir(target, name), reason)
    empty = prepared_split("test").iloc[:0]
    empty = empty if target in empty else empty.assign(**{target: pd.Series(dtype=float)})   # a target it lacks
    write_parquet(prediction_frame(empty, "test", target, [], []),
                  predictions_path(target, name))
    write_densities(densities_path(target, name), np.zeros(0, np.int64), np.zeros((0, 2)), Grid(0.0, 1.0, 2),
                    splits=np.zeros(0, str), target=target, head=name, calibration="skipped")
    return True


def epoch_callbacks(trial) -> list:
    """For heads trained by epochs: loss curves into the trial's MLflow run, and Optuna's pruning."""
    from galaxyprop.heads.neural import EpochReporter

    return [EpochReporter(lambda metrics, step: tracking.log_metrics(metrics, step=step)), pruning_callback(trial)]


def fit(head: Head, data: dict, callbacks=()) -> Head:
    """A tuning trial's fit: on the training split, early-stopping on the validation split and reporting
    to `callbacks` (heads trained by epoch), with the head's `trial_options` (clap: one realisation)."""
    return head.fit(*data["train"][:2], validation=tuple(data["val"][:2]), callbacks=callbacks,
                    **head.trial_options)


def sources_of(head: str, target: str, params: dict) -> list[str]:
    """What one train stage (head x target) trains the head on: image heads the cutouts, multimodal
    heads the cutouts and photometry (the stage records it skipped them where targets.<t>.features
    leaves them out), feature heads every source in features.compare and, for train.secondary_heads,
    features.secondary too; of those, only the ones in targets.<t>.features where the target lists them."""
    if head in IMAGE_HEADS:
        return [CUTOUTS]
    if head in MULTIMODAL_HEADS:
        return [MULTIMODAL_INPUTS]
    secondary = section(params, "features.secondary") if head in section(params, "train.secondary_heads") else []
    sources = list(dict.fromkeys([*section(params, "features.compare"), *secondary]))
    only = section(params, f"targets.{target}").get("features")
    return [s for s in sources if s in only] if only else sources


def train_result(head_name: str, target: str, features: str, params: dict, data_hash: str | None = None) -> None:
    """Tune, keep, calibrate and predict one head on one source for one target (one MLflow run, with the
    prepared splits as its datasets, `data_hash` their DVC hash)."""
    image_head, multimodal_head = head_name in IMAGE_HEADS, head_name in MULTIMODAL_HEADS
    name = head_name if image_head or multimodal_head else result_name(head_name, features)
    key = metrics_key(name, section(params, "features.default"))
    head_params, target_params = section(params, f"heads.{head_name}"), section(params, f"targets.{target}")
    if skip_unavailable(target, name, section(params, "data.source"), features, target_params.get("features")):
        return
    metric, eta = target_params["metric"], section(params, "evaluation.eta_threshold")
    # A target may tune its heads with fewer (or more) trials than the heads' own n_trials.
    n_trials = (target_params.get("n_trials") or {}).get(head_name, head_params["n_trials"])
    calibration_settings = CalibrationSettings.from_params(section(params, "calibration"))
    data = {split: split_inputs(head_name, features, split, target) for split in ("train", "val")}
    best: dict = {"value": np.inf, "head": None, "trial": None}
    grid = Grid.from_params(target_params["grid"])
    gives_density = head_class(head_name).gives_density
    # Heads with densities may tune on a density metric of the validation split (e.g. clap on crps).
    objective_metric = head_params.get("objective", metric)
    # What every trial shares: the head's fixed settings (heads.<head>.fixed) and, for heads that learn
    # densities on it, the target's grid; the trials draw the rest from heads.<head>.search.
    settings = dict(head_params.get("fixed") or {})
    if "seed" in inspect.signature(head_class(head_name)).parameters:
        settings.setdefault("seed", section(params, "seed"))      # the global seed unless the head sets one
    fixed = {**settings, **({"grid": target_params["grid"]} if head_class(head_name).needs_grid else {})}
    workers = section(params, "tuning.workers")
    # several tuning workers share the cores; one is this process, whose threads the stage already set
    tuning_threads = thread_plan((params.get("resources") or {}).get("threads", "auto"), workers) if workers > 1 else None
    # Tuning workers other than this process (tuning.workers > 1) leave their best model here for it to keep.
    kept = tempfile.TemporaryDirectory(prefix="galaxyprop-trials-")
    stage_pid = os.getpid()

    def objective(hyper: dict, trial) -> tuple[float, dict]:
        head = make_head(head_name, **{**hyper, **fixed})
        callbacks = epoch_callbacks(trial) if head.trains_by_epoch else []
        fit(head, data, callbacks)
        X_val, y_val, _ = data["val"]
        metrics = target_metrics(target, y_val, head.predict(X_val).value,
                                 target_params["outlier_threshold"], eta)
        # a trial may leave its densities to finalise (gbt's quantile models), unless it is scored on them
        if gives_density and not head.density_ready and objective_metric not in metrics:
            head.finalise(*data["train"][:2], validation=tuple(data["val"][:2]))
        if gives_density and head.density_ready:
            metrics.update(density_metrics(head.predict_pdf(X_val, grid), grid, y_val))
        if objective_metric not in metrics:
            raise GalaxypropError(f"heads.{head_name}.objective: '{objective_metric}' is not a metric of this head; "
                                  f"choose from {sorted(metrics)}")
        value = objective_value(objective_metric, metrics[objective_metric])
        tracking.log_metrics({**metrics, "objective": value}, prefix="val_")
        if value < best["value"]:
            best.update(value=value, head=head, trial=trial.number)
            if os.getpid() != stage_pid:
                joblib.dump(head, Path(kept.name) / f"trial-{trial.number}.joblib")
        return value, metrics

    # The study is keyed by the data it scores on (the inputs' bytes, so a retrained encoder starts a
    # new study), the code that fits and scores (the head's own import closure and the metrics: an edited
    # head does not inherit trials its old code ran, an edit elsewhere keeps every other head's study)
    # and everything else that changes the objective.
    code = code_digest(head_module(head_name), "galaxyprop.evaluation.metrics")
    # What scores a trial (not n_trials: more trials extend a study).
    scoring = {k: target_params[k] for k in ("metric", "outlier_threshold", "grid")}
    lineage = params_hash(digest(*data["train"][:2], *data["val"][:2]), code, head_params["search"], settings,
                          scoring, objective_metric)
    study_name = f"{section(params, 'data.source')}-{target}-{name}-{lineage}"
    run_name = f"train:{key}:{target}"
    stores = Stores.from_params(params)
    with tracking.stage_run(stores, run_name,
                            params={"head": head_name, "target": target, "features": features,
                                    "search": head_params["search"], "fixed": settings,
                                    "pruner": section(params, "tuning.pruner"), "n_trials": n_trials,
                                    "study": study_name, "tuning_workers": workers},
                            tags={"head": key, "target": target, "features": features}) as stage:
        tracking.log_datasets({"training": data["train"][2], "validation": data["val"][2]}, str(PREPARED), data_hash)
        start = time.perf_counter()
        study = tune(objective, head_params["search"], n_trials=n_trials,
                     study_name=study_name, storage=stores.optuna_storage, seed=section(params, "tuning.seed"),
                     pruner=make_pruner(section(params, "tuning.pruner")),
                     trial_context=lambda trial, hyper: tracking.trial_run(trial, hyper, run_name, stage.info.run_id),
                     workers=workers, threads=tuning_threads)
        tune_seconds = time.perf_counter() - start
        trial = study.best_trial
        hyper = hyperparameters(settings, trial)
        log.info("best %s for %s/%s: %.5g (trial %d) with %s", objective_metric, name, target,
                 trial.user_attrs[objective_metric], trial.number, trial.params)
        # The best trial's model (from this process or the tuning worker that ran it), or (when it ran
        # before an interruption) the same model refitted; then completed (e.g. clap's ensemble grows
        # from the trial's one realisation).
        start = time.perf_counter()
        from_worker = Path(kept.name) / f"trial-{trial.number}.joblib"
        head = (best["head"] if best["trial"] == trial.number else joblib.load(from_worker) if from_worker.exists()
                else fit(make_head(head_name, **{**hyper, **fixed}), data))
        kept.cleanup()
        head.finalise(*data["train"][:2], validation=tuple(data["val"][:2]))
        finalise_seconds = time.perf_counter() - start

        encoder = (Cutouts(head.crop) if image_head
                   else CutoutsAndPhotometry(load_object(FEATURES / "photometry" / FEATURE_ENCODER, object), head.crop)
                   if multimodal_head else load_object(FEATURES / features / FEATURE_ENCODER, object))
        predictor = Predictor(target, encoder, head, grid)
        predictor.record_support(*data["train"][:2])       # where served answers stop extrapolating
        # Calibration on the validation split (out-of-fold for its own metrics), stored in the model.
        X_val, y_val, val_frame = data["val"]
        start = time.perf_counter()
        calibration = predictor.calibrate(X_val, y_val, split_fields(val_frame), calibration_settings)
        calibrate_seconds = time.perf_counter() - start
        log.info("calibration of %s/%s: %s", name, target, predictor.calibration_method)
        out = model_dir(target, name)
        out.mkdir(parents=True, exist_ok=True)
        predictor.save(out / "predictor.joblib")
        write_json({"head": head_name, "features": features, "target": target, "params": hyper,
                    "study": study_name, "best_trial": trial.number,
                    **{f"val_{m}": trial.user_attrs[m] for m in dict.fromkeys([metric, objective_metric])},
                    **({"best_epoch": head.best_epoch_} if head.trains_by_epoch else {})},
                   out / "best_params.json")
        write_json(calibration.report, out / "calibration.json")

        data["test"] = split_inputs(head_name, features, "test", target)
        frames, densities, start, n_predicted = [], [], time.perf_counter(), 0
        for split in ("val", "test"):
            X, _, frame = data[split]
            result, raw, calibrated, fine = predictor.densities(X, split_fields(frame))
            if split == "val":          # the validation galaxies' own calibration is out-of-fold
                calibrated = calibration.validation_pdf
            n_predicted += len(X)
            low, high = quantiles(calibrated, fine, np.array([QUANTILES[1], QUANTILES[3]])).T
            frames.append(prediction_frame(frame, split, target, result.value, (high - low) / 2)
                          .assign(spread_raw=result.spread))
            densities.append((frame[schema.ID].to_numpy(), split, resample(raw, fine, grid),
                              resample(calibrated, fine, grid)))
        predict_rate = n_predicted / (time.perf_counter() - start)
        write_parquet(pd.concat(frames, ignore_index=True), predictions_path(target, name))
        write_densities(densities_path(target, name), np.concatenate([d[0] for d in densities]),
                        np.concatenate([d[3] for d in densities]), grid,
                        splits=np.concatenate([np.full(len(d[0]), d[1]) for d in densities]),
                        raw=np.concatenate([d[2] for d in densities]) if predictor.calibrated else None,
                        target=target, head=name, calibration=predictor.calibration_method)
        states = [t.state.name for t in study.trials if t.state in FINISHED]
        # counts in the model folder (byte-stable); wall times and memory beside the outputs and in MLflow
        write_json({"n_complete": states.count("COMPLETE"), "n_pruned": states.count("PRUNED"),
                    "n_train": len(data["train"][0])}, out / "tuning.json")
        write_json({"tune_seconds": round(tune_seconds, 2), "finalise_seconds": round(finalise_seconds, 2),
                    "calibrate_seconds": round(calibrate_seconds, 2), "predict_galaxies_per_s": round(predict_rate, 1),
                    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
                   timings_path(run_name))
        tracking.log_metrics({f"tuning_val_{k}": v for k, v in trial.user_attrs.items()})   # the best trial's, raw
        tracking.log_metrics({"calibrate_seconds": calibrate_seconds})
        tracking.set_tags({"calibration": predictor.calibration_method})
        tracking.log_metrics({"tune_seconds": tune_seconds, "predict_galaxies_per_s": predict_rate})
        tracking.set_tags({f"best.{k}": v for k, v in hyper.items()})
        tracking.log_artifacts([out / "best_params.json", out / "tuning.json", out / "calibration.json"])


def preload_fitting(head_name: str) -> None:
    """Import the head's module (and with a network's, torch) once, before the lanes fork: each lane would
    otherwise import it again (torch: ~2.4 s a lane). Importing opens nothing the forks would share. (The
    image embeddings' encoder, which only their own lane loads, imports torch there, beside the others.)"""
    head_class(head_name)


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--head", required=True)
    parser.add_argument("--target", required=True, help="a target of params `targets`")
    parser.add_argument("--features", default=None, help="one feature source (default: every source the stage "
                                                           "trains the head on, see sources_of)")
    args = parser.parse_args()
    params = stage_params(HEADS_SCHEMA, TRAIN_SCHEMA, TARGETS_SCHEMA, FEATURES_SCHEMA, TUNING_SCHEMA, CALIBRATION_SCHEMA,
                          EVALUATION_SCHEMA)
    if args.target not in params["targets"]:
        known = ", ".join(sorted(params["targets"]))
        raise GalaxypropError(f"--target {args.target}: not a target of params targets ({known})")
    sources = [args.features] if args.features else sources_of(args.head, args.target, params)
    data_hash = dvc_output_hash(PREPARED)
    if len(sources) > 1:      # each source in a process of its own, one per idle core (galaxyprop.lanes)
        plan = process_plan() if section(params, "tuning.workers") == 1 else ThreadPlan(1, 1, 1)
        # the stores the lanes share, made first in a process of their own (lanes that both find them new race
        # to create them; this process opens no connection its forks would share)
        tracking.preload(Stores.from_params(params))
        preload_fitting(args.head)
        run_in_lanes([("creating the stores", functools.partial(prepare_stores, Stores.from_params(params)))], plan)
        run_in_lanes([(f"{args.head} on {features} for {args.target}",
                       functools.partial(train_result, args.head, args.target, features, params, data_hash))
                      for features in sources], plan)
    elif sources:
        train_result(args.head, args.target, sources[0], params, data_hash)
    if not sources:                 # targets.<t>.features leaves this head nothing: the stage's folders say so
        folders = head_folders(args.target, args.head)
        for folder in folders[1:]:
            folder.mkdir(parents=True, exist_ok=True)
        write_skipped(folders[0], f"targets.{args.target}.features lists no source that {args.head} is trained on")


if __name__ == "__main__":
    main()
