"""MLflow tracking: one run per pipeline stage, nested runs per tuning trial, FAILED on error."""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

import mlflow

from galaxyprop.config import Stores
from galaxyprop.provenance import git_commit

_MAX_PARAM_LENGTH = 6000
logging.getLogger("mlflow").setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def connect(stores: Stores) -> str:
    """Point MLflow at the project's stores; create the experiment if needed; return its id."""
    mlflow.set_tracking_uri(stores.tracking_uri)
    mlflow.set_registry_uri(stores.tracking_uri)
    experiment = mlflow.get_experiment_by_name(stores.experiment)
    if experiment is None:
        location = f"{stores.artifact_location.rstrip('/')}/{stores.experiment}"
        experiment_id = mlflow.create_experiment(stores.experiment, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def flatten(params: Mapping, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': 1}} -> {'a.b': 1}; long values are truncated to MLflow's limit."""
    flat: dict[str, object] = {}
    for key, value in params.items():
        name = mlflow_key(f"{prefix}{key}")
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:_MAX_PARAM_LENGTH]
    return flat


@contextmanager
def stage_run(stores: Stores, run_name: str, params: Mapping | None = None,
              tags: Mapping[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for one stage; ended FAILED (and the error re-raised) if the stage fails."""
    connect(stores)
    all_tags = {"stage": run_name.split(":")[0], "git_commit": git_commit(), **(tags or {})}
    run = mlflow.start_run(run_name=run_name, tags=all_tags)
    try:
        if params:
            mlflow.log_params(flatten(params))
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    mlflow.end_run(status="FINISHED")


@contextmanager
def child_run(run_name: str, tags: Mapping[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """A nested run under the active stage run (one per registered model or trial)."""
    with mlflow.start_run(run_name=run_name, nested=True, tags=dict(tags or {})) as run:
        yield run


def mlflow_key(name: str) -> str:
    """A param/metric name MLflow accepts: `@` (as in `knn@photometry`) becomes `:`, any other
    character it forbids (e.g. the `*` of a catalogue's any-PHOTSYS responses) becomes `_`."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("@", ":"))


def log_metrics(metrics: Mapping[str, float], prefix: str = "", step: int | None = None) -> None:
    """Log the finite numbers of a (nested) mapping to the active run, at `step` for curves."""
    finite = {mlflow_key(f"{prefix}{k}"): float(v) for k, v in flatten(metrics).items()
              if _is_number(v)}
    if finite:
        mlflow.log_metrics(finite, step=step)


def _is_number(value: object) -> bool:
    try:
        return float(value) == float(value)  # drops NaN
    except (TypeError, ValueError):
        return False


def set_tags(tags: Mapping[str, object]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


@contextmanager
def trial_run(trial, params: Mapping, run_prefix: str) -> Iterator[mlflow.ActiveRun]:
    """A nested run for one Optuna trial, open while it trains (so its curves land in it).

    A pruned trial ends FINISHED with the tag `optuna_state=PRUNED`; a failed one ends FAILED;
    either way the stage's run stays the active parent.
    """
    import optuna

    run = mlflow.start_run(run_name=f"{run_prefix}:trial-{trial.number}", nested=True,
                           tags={"optuna_trial": str(trial.number), "optuna_study": trial.study.study_name})
    try:
        mlflow.log_params(flatten(params))
        yield run
    except optuna.TrialPruned:
        mlflow.set_tag("optuna_state", "PRUNED")
        mlflow.end_run(status="FINISHED")
        raise
    except BaseException:
        mlflow.set_tag("optuna_state", "FAIL")
        mlflow.end_run(status="FAILED")
        raise
    mlflow.set_tag("optuna_state", "COMPLETE")
    mlflow.end_run(status="FINISHED")


def log_artifacts(paths: list[str | Path], artifact_path: str | None = None) -> None:
    for path in paths:
        if Path(path).is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        elif Path(path).exists():
            mlflow.log_artifact(str(path), artifact_path=artifact_path)
