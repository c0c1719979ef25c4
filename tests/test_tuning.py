"""Optuna tuning: seeded, stored in an RDB, resumable to exactly n_trials."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np
import optuna
import pytest

from galaxyprop.errors import GalaxypropError
from galaxyprop.tracking.tuning import WORKER_ATTR, hyperparameters, make_pruner, pruning_callback, tune

from conftest import PROJECT, mlflow_store

SPACE = {"x": {"low": -5.0, "high": 5.0}, "n": {"low": 1, "high": 8}, "kind": ["a", "b"], "fixed": 3}


def objective(params, trial=None):
    assert params["fixed"] == 3 and isinstance(params["n"], int)
    value = (params["x"] - 1.0) ** 2 + (params["kind"] == "b")
    return value, {"loss": value}


@contextmanager
def _record(seen: list, trial):
    seen.append(trial.number)
    yield


def test_tuning_resumes_to_n_trials_and_is_seeded(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    seen = []
    study = tune(objective, SPACE, n_trials=6, study_name="s", storage=storage, seed=7,
                 trial_context=lambda trial, params: _record(seen, trial))
    assert len(study.trials) == 6 and len(seen) == 6
    resumed = tune(objective, SPACE, n_trials=10, study_name="s", storage=storage, seed=7)
    assert len(resumed.trials) == 10  # four more, not ten more
    again = tune(objective, SPACE, n_trials=10, study_name="s", storage=storage, seed=7)
    assert len(again.trials) == 10  # nothing left to do
    assert again.best_trial.user_attrs["loss"] == again.best_value
    full = hyperparameters({"fixed": 3}, again.best_trial)   # heads.<head>.fixed and the drawn values
    assert full["fixed"] == 3 and set(full) == set(SPACE) and full["x"] == again.best_trial.params["x"]
    assert objective(full)[0] == again.best_value
    other = tune(objective, SPACE, n_trials=6, study_name="t", storage=storage, seed=7)
    assert [t.params for t in other.trials] == [t.params for t in study.trials[:6]]


def stale_trial(storage: str, study_name: str) -> int:
    """A trial left RUNNING by a killed stage: its last heartbeat an hour old, far past tune's grace period."""
    import sqlite3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)      # "heartbeat is supposed to be used with optimize"
        rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=30, grace_period=90)
        trial = optuna.load_study(study_name=study_name, storage=rdb).ask()
        rdb.record_heartbeat(trial._trial_id)
    rdb.engine.dispose()
    with sqlite3.connect(storage.removeprefix("sqlite:///")) as db:
        changed = db.execute("UPDATE trial_heartbeats SET heartbeat = datetime('now', '-1 hour') WHERE trial_id = ?",
                             (trial._trial_id,)).rowcount
    assert changed == 1
    return trial.number


def test_stale_running_trials_are_failed_not_counted(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def states(study):
        return {t.number: t.state for t in study.trials}

    optuna.create_study(study_name="s", storage=storage)
    first = stale_trial(storage, "s")
    study = tune(objective, SPACE, n_trials=3, study_name="s", storage=storage, seed=0)
    assert states(study)[first] == optuna.trial.TrialState.FAIL
    assert sum(state in finished for state in states(study).values()) == 3
    # The study already holds its n_trials: tune runs no trial (so Optuna's own check in `optimize`
    # never runs) and must still fail the stale one, which then does not linger as RUNNING.
    second = stale_trial(storage, "s")
    study = tune(objective, SPACE, n_trials=3, study_name="s", storage=storage, seed=0)
    assert states(study)[second] == optuna.trial.TrialState.FAIL
    assert sum(state in finished for state in states(study).values()) == 3
    assert optuna.trial.TrialState.RUNNING not in states(study).values()


def test_bad_search_space(tmp_path):
    with pytest.raises(GalaxypropError, match="needs 'low' and 'high'"):
        tune(objective, {"x": {"low": 1}}, n_trials=1, study_name="s", storage=f"sqlite:///{tmp_path}/o.db", seed=0)


class PruneOddTrials(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return trial.number % 2 == 1 and len(trial.intermediate_values) >= 2


@pytest.mark.slow
def test_a_pruned_trial_ends_its_mlflow_run_cleanly(tmp_path):
    """Real MLP trials with Optuna's Lightning pruning callback, each in a nested MLflow run."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from galaxyprop.config import Stores
    from galaxyprop.heads import make_head
    from galaxyprop.heads.neural import EpochReporter
    from galaxyprop.tracking import runs as tracking

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3)).astype(np.float32)
    y = X[:, 0] + 0.1 * rng.normal(size=400)
    space = {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}, "max_epochs": 6, "patience": 10}

    def objective(params, trial):
        head = make_head("mlp", width=16, **params)
        head.fit(X[:300], y[:300], validation=(X[300:], y[300:]), callbacks=[
            EpochReporter(lambda metrics, step: tracking.log_metrics(metrics, step=step)), pruning_callback(trial)])
        return float(np.mean((head.predict(X[300:]).value - y[300:]) ** 2)), {}

    stores = Stores(f"sqlite:///{tmp_path}/mlflow.db", (tmp_path / "artifacts").as_uri(),
                    f"sqlite:///{tmp_path}/optuna.db", "test")
    with mlflow_store(stores.tracking_uri):
        with tracking.stage_run(stores, "train:mlp:z") as stage:
            study = tune(objective, space, n_trials=3, study_name="s", storage=stores.optuna_storage, seed=0,
                         pruner=PruneOddTrials(),
                         trial_context=lambda trial, params: tracking.trial_run(trial, params, "train:mlp:z"))
            assert mlflow.active_run().info.run_id == stage.info.run_id   # the stage's run is still the parent
        client = MlflowClient()
        runs = {r.data.tags["optuna_trial"]: r for r in client.search_runs(
            [stage.info.experiment_id], f"tags.mlflow.parentRunId = '{stage.info.run_id}'")}
        assert client.get_run(stage.info.run_id).info.status == "FINISHED"
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    pruned, complete = runs["1"], runs["0"]
    assert pruned.info.status == "FINISHED" and pruned.data.tags["optuna_state"] == "PRUNED"
    assert complete.info.status == "FINISHED" and complete.data.tags["optuna_state"] == "COMPLETE"
    with mlflow_store(stores.tracking_uri):
        curve = MlflowClient().get_metric_history(pruned.info.run_id, "val_loss")
        full = MlflowClient().get_metric_history(complete.info.run_id, "val_loss")
    assert [m.step for m in curve] == [0, 1]          # its curve up to the epoch it was stopped at
    assert [m.step for m in full] == list(range(6))
    assert float(pruned.data.params["learning_rate"]) == study.trials[1].params["learning_rate"]


KILLABLE = """
import sys, time
from galaxyprop.tracking.tuning import tune
def objective(params, trial):
    if trial.number >= 2:
        time.sleep(600)          # the stage is killed here
    return (params["x"] - 1.0) ** 2, {}
tune(objective, {"x": {"low": -5.0, "high": 5.0}}, n_trials=5, study_name="s", storage=sys.argv[1], seed=3,
     heartbeat=(1, 3))
"""


@pytest.mark.slow   # fresh processes, a server or a simulation: left out of `make test-fast`
def test_a_killed_study_continues_where_it_stopped(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, storage], cwd=PROJECT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                study = optuna.load_study(study_name="s", storage=storage)
                if sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) == 2:
                    break
            except KeyError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the tuning process did not complete two trials")
    finally:
        process.kill()
        process.wait()
    before = optuna.load_study(study_name="s", storage=storage).trials
    # a short heartbeat: the killed trial is stale (and retried) within seconds, not the stages' 90 s
    resumed = tune(lambda params, trial: ((params["x"] - 1.0) ** 2, {}), {"x": {"low": -5.0, "high": 5.0}},
                   n_trials=5, study_name="s", storage=storage, seed=3, heartbeat=(1, 3))
    states = [t.state.name for t in resumed.trials]
    assert states.count("COMPLETE") == 5                      # three more, not five more
    assert [t.params for t in resumed.trials[:2]] == [t.params for t in before[:2]]
    assert states[2] in ("RUNNING", "FAIL")                   # the killed trial is not counted


def test_pruners_from_params():
    assert isinstance(make_pruner({"kind": "median", "n_startup_trials": 2}), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner({"kind": "hyperband", "min_resource": 1}), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner(None), optuna.pruners.NopPruner)
    with pytest.raises(GalaxypropError, match="must be one of"):
        make_pruner({"kind": "asha"})
    with pytest.raises(GalaxypropError, match="bad arguments for 'median'"):
        make_pruner({"kind": "median", "patience": 3})


def slow_objective(params, trial):
    time.sleep(0.3)
    return (params["x"] - 1.0) ** 2, {"loss": (params["x"] - 1.0) ** 2}


def trials_by_state(study) -> dict[str, list]:
    out: dict[str, list] = {}
    for t in study.trials:
        out.setdefault(t.state.name, []).append(t)
    return out


@pytest.mark.slow
def test_two_workers_on_a_postgres_study_finish_exactly_n_trials(postgres):
    storage = f"{postgres}/optuna"
    study = tune(slow_objective, {"x": {"low": -5.0, "high": 5.0}}, n_trials=9, study_name="two-workers",
                 storage=storage, seed=1, workers=2)
    states = trials_by_state(study)
    assert set(states) == {"COMPLETE"} and len(states["COMPLETE"]) == 9     # not 10: no overshoot at the end
    assert sorted(t.number for t in study.trials) == list(range(9))
    workers = {t.user_attrs[WORKER_ATTR] for t in study.trials}
    assert len(workers) == 2 and {w.rsplit("/", 1)[1] for w in workers} == {"0", "1"}
    assert len({t.user_attrs[WORKER_ATTR].split(":")[1].split("/")[0] for t in study.trials}) == 2   # two pids
    # the workers' samplers differ (seed + index) and TPE's constant liar keeps them apart
    assert len({round(t.params["x"], 9) for t in study.trials}) == 9
    again = tune(slow_objective, {"x": {"low": -5.0, "high": 5.0}}, n_trials=9, study_name="two-workers",
                 storage=storage, seed=1, workers=2)
    assert len(again.trials) == 9                                            # done: nothing more


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_recovered_from(postgres, tmp_path):
    """Worker 1 SIGKILLs itself inside its first trial: that trial stays RUNNING until its heartbeat is
    older than the grace period; worker 0 then fails it, retries it with the same parameters, and the
    study still ends with exactly n_trials complete ones."""
    import os
    import signal

    marker = tmp_path / "killed"

    def dies_once(params, trial):
        if trial.user_attrs[WORKER_ATTR].endswith("/1") and not marker.exists():
            marker.write_text(str(trial.number))
            os.kill(os.getpid(), signal.SIGKILL)
        return slow_objective(params, trial)

    study = tune(dies_once, {"x": {"low": -5.0, "high": 5.0}}, n_trials=6, study_name="killed-worker",
                 storage=f"{postgres}/optuna", seed=2, workers=2, heartbeat=(1, 3))
    states = trials_by_state(study)
    killed = int(marker.read_text())
    assert len(states["COMPLETE"]) == 6 and [t.number for t in states["FAIL"]] == [killed]
    assert set(states) == {"COMPLETE", "FAIL"}                               # nothing RUNNING or WAITING left
    retry = [t for t in states["COMPLETE"] if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == killed]
    assert len(retry) == 1 and retry[0].params == states["FAIL"][0].params
    assert retry[0].user_attrs[WORKER_ATTR].endswith("/0")                   # the survivor ran it


def test_parallel_workers_on_sqlite_are_refused_in_one_line(tmp_path):
    with pytest.raises(GalaxypropError) as refused:
        tune(objective, SPACE, n_trials=2, study_name="s", storage=f"sqlite:///{tmp_path}/o.db", seed=0, workers=2)
    message = str(refused.value)
    assert "\n" not in message and "tuning.workers: 2" in message and "sqlite" in message
    assert not (tmp_path / "o.db").exists()                                  # refused before touching the store
