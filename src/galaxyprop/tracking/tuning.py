"""Optuna tuning of a head on the validation split: seeded, stored, resumable.

The search space comes from params: a list is a categorical choice, a mapping with `low` and
`high` (and optional `log`) an int or float range, anything else a fixed value.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext

import optuna

from galaxyprop.errors import GalaxypropError

Objective = Callable[[dict, optuna.Trial], tuple[float, dict[str, float]]]
TrialContext = Callable[[optuna.Trial, dict], AbstractContextManager]
#: Trials that count towards `n_trials`: finished, whether they ran to the end or were pruned.
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def make_pruner(config: Mapping | None) -> optuna.pruners.BasePruner:
    """`{kind: median|hyperband|none, ...}` from params; the rest are the pruner's arguments."""
    config = dict(config or {"kind": "none"})
    kind = config.pop("kind", "none")
    pruners = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
               "none": optuna.pruners.NopPruner}
    if kind not in pruners:
        raise GalaxypropError(f"tuning.pruner.kind must be one of {sorted(pruners)}, got '{kind}'")
    try:
        return pruners[kind](**config)
    except TypeError as err:
        raise GalaxypropError(f"tuning.pruner: bad arguments for '{kind}' ({err})") from None


def pruning_callback(trial: optuna.Trial, monitor: str = "val_loss"):
    """Optuna's Lightning callback: reports `monitor` each epoch and stops a trial the pruner rejects."""
    from optuna_integration import PyTorchLightningPruningCallback

    return PyTorchLightningPruningCallback(trial, monitor=monitor)


def suggest(trial: optuna.Trial, space: Mapping) -> dict:
    """Draw one set of hyperparameters from `space`."""
    params = {}
    for name, spec in space.items():
        if isinstance(spec, (list, tuple)):
            params[name] = trial.suggest_categorical(name, list(spec))
        elif isinstance(spec, Mapping):
            if not {"low", "high"} <= set(spec):
                raise GalaxypropError(f"search space '{name}' needs 'low' and 'high', got {dict(spec)}")
            low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
            if isinstance(low, int) and isinstance(high, int):
                params[name] = trial.suggest_int(name, low, high, log=log)
            else:
                params[name] = trial.suggest_float(name, float(low), float(high), log=log)
        else:
            params[name] = spec
    return params


def hyperparameters(fixed: Mapping, trial: optuna.trial.FrozenTrial) -> dict:
    """All hyperparameters of a finished trial: the head's fixed settings and the trial's drawn values."""
    return {**fixed, **trial.params}


def tune(objective: Objective, space: Mapping, *, n_trials: int, study_name: str, storage: str,
         seed: int, pruner: optuna.pruners.BasePruner | None = None,
         trial_context: TrialContext | None = None) -> optuna.Study:
    """Minimise `objective(params, trial)` over `space` until the study holds `n_trials` finished
    (complete or pruned) trials; each runs inside `trial_context(trial, params)` when given.

    The study lives in `storage` under `study_name`; a killed run resumes where it stopped and
    trials left RUNNING by it are marked failed by the heartbeat.
    """
    optuna.logging.set_verbosity(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=30, grace_period=90)
        study = optuna.create_study(study_name=study_name, storage=rdb, load_if_exists=True,
                                    direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                    pruner=pruner or optuna.pruners.NopPruner())
        optuna.storages.fail_stale_trials(study)
    done = sum(t.state in FINISHED for t in study.trials)

    def run_trial(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        with trial_context(trial, params) if trial_context else nullcontext():
            value, metrics = objective(params, trial)
        for name, metric in metrics.items():
            trial.set_user_attr(name, metric)
        return value

    if n_trials > done:
        study.optimize(run_trial, n_trials=n_trials - done, show_progress_bar=True)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise GalaxypropError(f"study '{study_name}' has no complete trial")
    return study
