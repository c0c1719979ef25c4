"""Optuna tuning: seeded, stored in an RDB, resumable to exactly n_trials."""

from __future__ import annotations

import optuna
import pytest

from galaxyprop.errors import GalaxypropError
from galaxyprop.tuning import hyperparameters, tune

SPACE = {"x": {"low": -5.0, "high": 5.0}, "n": {"low": 1, "high": 8}, "kind": ["a", "b"], "fixed": 3}


def objective(params):
    assert params["fixed"] == 3 and isinstance(params["n"], int)
    value = (params["x"] - 1.0) ** 2 + (params["kind"] == "b")
    return value, {"loss": value}


def test_tuning_resumes_to_n_trials_and_is_seeded(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    seen = []
    study = tune(objective, SPACE, n_trials=6, study_name="s", storage=storage, seed=7, on_trial=seen.append)
    assert len(study.trials) == 6 and len(seen) == 6
    resumed = tune(objective, SPACE, n_trials=10, study_name="s", storage=storage, seed=7)
    assert len(resumed.trials) == 10  # four more, not ten more
    again = tune(objective, SPACE, n_trials=10, study_name="s", storage=storage, seed=7)
    assert len(again.trials) == 10  # nothing left to do
    assert again.best_trial.user_attrs["loss"] == again.best_value
    full = hyperparameters(SPACE, again.best_trial)
    assert full["fixed"] == 3 and set(full) == set(SPACE)
    assert objective(full)[0] == again.best_value
    other = tune(objective, SPACE, n_trials=6, study_name="t", storage=storage, seed=7)
    assert [t.params for t in other.trials] == [t.params for t in study.trials[:6]]


def test_stale_running_trials_are_failed_not_counted(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage)
    study.ask()  # a trial left RUNNING, as by a killed stage
    resumed = tune(objective, SPACE, n_trials=3, study_name="s", storage=storage, seed=0)
    states = [t.state for t in resumed.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3


def test_bad_search_space(tmp_path):
    with pytest.raises(GalaxypropError, match="needs 'low' and 'high'"):
        tune(objective, {"x": {"low": 1}}, n_trials=1, study_name="s", storage=f"sqlite:///{tmp_path}/o.db", seed=0)
