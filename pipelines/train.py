"""Stage train (head x target): tune the head with Optuna on the validation split, refit, predict."""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd
from common import (FEATURE_ENCODER, FEATURES, feature_split, metrics_key, model_dir, prediction_frame,
                    predictions_path, prepared_split, result_name)

from galaxyprop import tracking
from galaxyprop.config import Stores, load_params, params_hash, section
from galaxyprop.data import schema
from galaxyprop.data.io import load_object, write_json, write_parquet
from galaxyprop.errors import exit_on_error
from galaxyprop.heads import make_head
from galaxyprop.metrics import objective_value, target_metrics
from galaxyprop.predictor import Predictor
from galaxyprop.tuning import hyperparameters, tune

log = logging.getLogger("train")


def load_xy(features: str, split: str, target: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Features, target and catalogue rows of one split: the galaxies that have these features."""
    table, frame = feature_split(features, split), prepared_split(split)
    frame = frame[frame[schema.ID].isin(table[schema.ID])].reset_index(drop=True)
    matrix = table.set_index(schema.ID).loc[frame[schema.ID]].to_numpy(np.float32)
    return matrix, frame[target].to_numpy(float), frame


def _digest(*arrays: np.ndarray) -> str:
    import hashlib

    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--head", required=True)
    parser.add_argument("--target", required=True, choices=sorted(schema.TARGETS))
    parser.add_argument("--features", default=None, help="feature source (default: params features.default)")
    args = parser.parse_args()
    params = load_params()
    features = args.features or section(params, "features.default")
    name = result_name(args.head, features)
    key = metrics_key(name, section(params, "features.default"))
    head_params, target_params = section(params, f"heads.{args.head}"), section(params, f"targets.{args.target}")
    metric, eta = target_params["metric"], section(params, "evaluation.eta_threshold")
    X_train, y_train, _ = load_xy(features, "train", args.target)
    X_val, y_val, val_frame = load_xy(features, "val", args.target)

    def objective(hyper: dict) -> tuple[float, dict]:
        head = make_head(args.head, **hyper).fit(X_train, y_train)
        metrics = target_metrics(args.target, y_val, head.predict(X_val).value,
                                 target_params["outlier_threshold"], eta)
        return objective_value(metric, metrics[metric]), metrics

    # The study is keyed by the data it scores on (the features' bytes, so a retrained encoder
    # starts a new study) and everything else that changes the objective.
    lineage = params_hash(_digest(X_train, y_train, X_val, y_val),
                          head_params["search"], target_params)
    study_name = f"{section(params, 'data.source')}-{args.target}-{name}-{lineage}"
    run_name = f"train:{key}:{args.target}"
    stores = Stores.from_params(params)
    with tracking.stage_run(stores, run_name,
                            params={"head": args.head, "target": args.target, "features": features,
                                    "search": head_params["search"],
                                    "n_trials": head_params["n_trials"], "study": study_name},
                            tags={"head": key, "target": args.target, "features": features}):
        study = tune(objective, head_params["search"], n_trials=head_params["n_trials"],
                     study_name=study_name, storage=stores.optuna_storage,
                     seed=section(params, "tuning.seed"),
                     on_trial=lambda trial: tracking.log_trial(trial, run_name))
        best = study.best_trial
        log.info("best %s for %s/%s: %s = %.5g with %s", metric, args.head, args.target,
                 metric, best.user_attrs[metric], best.params)

        hyper = hyperparameters(head_params["search"], best)
        head = make_head(args.head, **hyper).fit(X_train, y_train)
        encoder = load_object(FEATURES / features / FEATURE_ENCODER, object)
        out = model_dir(args.target, name)
        out.mkdir(parents=True, exist_ok=True)
        Predictor(args.target, encoder, head).save(out / "predictor.joblib")
        write_json({"head": args.head, "features": features, "target": args.target, "params": hyper,
                    "study": study_name,
                    "best_trial": best.number, f"val_{metric}": best.user_attrs[metric]},
                   out / "best_params.json")

        X_test, _, test_frame = load_xy(features, "test", args.target)
        frames = []
        for split, X, frame in (("val", X_val, val_frame), ("test", X_test, test_frame)):
            prediction = head.predict(X)
            frames.append(prediction_frame(frame, split, args.target, prediction.value, prediction.spread))
        write_parquet(pd.concat(frames, ignore_index=True), predictions_path(args.target, name))
        tracking.log_metrics({f"best_val_{k}": v for k, v in best.user_attrs.items()})
        tracking.set_tags({f"best.{k}": v for k, v in hyper.items()})
        tracking.log_artifacts([out / "best_params.json"])


if __name__ == "__main__":
    main()
