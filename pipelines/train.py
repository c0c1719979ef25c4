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
import json
import logging
import resource
import time

import numpy as np
import pandas as pd

from galaxyprop import training
from galaxyprop.calibration.params import CALIBRATION_SCHEMA
from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.density_file import write_densities
from galaxyprop.data.io import load_object, write_json, write_parquet
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.evaluation.densities import Grid
from galaxyprop.evaluation.params import EVALUATION_SCHEMA
from galaxyprop.features.images import Cutouts
from galaxyprop.features.multimodal import CutoutsAndPhotometry
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.heads import IMAGE_HEADS, MULTIMODAL_HEADS, head_class
from galaxyprop.heads.params import HEADS_SCHEMA, TRAIN_SCHEMA
from galaxyprop.lanes import run_in_lanes
from galaxyprop.provenance import dvc_output_hash
from galaxyprop.resources import ThreadPlan, process_plan
from galaxyprop.results import CUTOUTS, IMAGE_HEAD_INPUTS, MULTIMODAL_INPUTS, metrics_key, result_name
from galaxyprop.tracking import runs as tracking
from galaxyprop.tracking.tuning import TUNING_SCHEMA, create_storage
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
    """Train one head on one source for one target (`galaxyprop.training`) in one MLflow run, with the prepared
    splits as its datasets (`data_hash` their DVC hash), and write its model, predictions and densities."""
    image_head, multimodal_head = head_name in IMAGE_HEADS, head_name in MULTIMODAL_HEADS
    name = head_name if image_head or multimodal_head else result_name(head_name, features)
    key = metrics_key(name, section(params, "features.default"))
    spec = training.TrainingSpec.from_params(head_name, target, name, params)
    if skip_unavailable(target, name, section(params, "data.source"), features, spec.target_params.get("features")):
        return

    def inputs(split: str) -> training.Split:
        X, y, frame = split_inputs(head_name, features, split, target)
        return X, y, frame, split_fields(frame)

    def encoder_of(head):
        return (Cutouts(head.crop) if image_head
                else CutoutsAndPhotometry(load_object(FEATURES / "photometry" / FEATURE_ENCODER, object), head.crop)
                if multimodal_head else load_object(FEATURES / features / FEATURE_ENCODER, object))

    data = {split: inputs(split) for split in ("train", "val")}
    study = training.study_name(spec, data)
    run_name = f"train:{key}:{target}"
    stores = Stores.from_params(params)
    # params every result's run has (the compare page's common axes), and at the end the kept model's
    # hyperparameters under the names heads share; the search space as an artifact
    with tracking.stage_run(stores, run_name,
                            params={"head": head_name, "target": target, "features": features,
                                    "n_trials": spec.n_trials, "tuning_workers": spec.tuning["workers"],
                                    "n_train": len(data["train"][0])},
                            tags={"head": key, "target": target, "features": features, "study": study}) as stage:
        tracking.log_dict({"search": spec.head_params["search"], "fixed": spec.settings,
                           "pruner": spec.tuning["pruner"]}, "tuning_space.json")
        tracking.log_datasets({"training": data["train"][2], "validation": data["val"][2]}, str(PREPARED), data_hash)
        result = training.train(spec, data, stores, study, run_name, stage.info.run_id, encoder_of)
        trial, hyper, predictor = result.best_trial, result.hyper, result.predictor
        log.info("best %s for %s/%s: %.5g (trial %d) with %s", spec.objective_metric, name, target,
                 trial.user_attrs[spec.objective_metric], trial.number, trial.params)
        log.info("calibration of %s/%s: %s", name, target, predictor.calibration_method)
        out = model_dir(target, name)
        out.mkdir(parents=True, exist_ok=True)
        predictor.save(out / "predictor.joblib")
        metric = spec.target_params["metric"]
        write_json({"head": head_name, "features": features, "target": target, "params": hyper,
                    "study": result.study_name, "best_trial": trial.number,
                    **{f"val_{m}": trial.user_attrs[m] for m in dict.fromkeys([metric, spec.objective_metric])},
                    **({"best_epoch": predictor.head.best_epoch_} if predictor.head.trains_by_epoch else {})},
                   out / "best_params.json")
        write_json(result.calibration.report, out / "calibration.json")

        data["test"] = inputs("test")
        frames, densities, start, n_predicted = [], [], time.perf_counter(), 0
        for split in ("val", "test"):
            X, _, frame, fields = data[split]
            answers = training.predict_split(result, split, X, fields)
            n_predicted += len(X)
            frames.append(prediction_frame(frame, split, target, answers.value, answers.half_width)
                          .assign(spread_raw=answers.spread_raw))
            densities.append((frame[schema.ID].to_numpy(), split, answers.raw, answers.calibrated))
        predict_rate = n_predicted / (time.perf_counter() - start)
        write_parquet(pd.concat(frames, ignore_index=True), predictions_path(target, name))
        write_densities(densities_path(target, name), np.concatenate([d[0] for d in densities]),
                        np.concatenate([d[3] for d in densities]), spec.grid,
                        splits=np.concatenate([np.full(len(d[0]), d[1]) for d in densities]),
                        raw=np.concatenate([d[2] for d in densities]) if predictor.calibrated else None,
                        target=target, head=name, calibration=predictor.calibration_method)
        # counts in the model folder (byte-stable); wall times and memory beside the outputs and in MLflow
        write_json({"n_complete": result.n_complete, "n_pruned": result.n_pruned, "n_train": len(data["train"][0])},
                   out / "tuning.json")
        seconds = result.seconds
        write_json({"tune_seconds": round(seconds["tune"], 2), "finalise_seconds": round(seconds["finalise"], 2),
                    "calibrate_seconds": round(seconds["calibrate"], 2), "predict_galaxies_per_s": round(predict_rate, 1),
                    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},
                   timings_path(run_name))
        tracking.log_metrics({f"tuning_val_{k}": v for k, v in trial.user_attrs.items()})   # the best trial's, raw
        tracking.log_metrics({"calibrate_seconds": seconds["calibrate"]})
        tracking.set_tags({"calibration": predictor.calibration_method})
        tracking.log_metrics({"tune_seconds": seconds["tune"], "predict_galaxies_per_s": predict_rate})
        tracking.log_params(training.common_hyperparameters(head_name, hyper))
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
