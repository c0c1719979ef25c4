"""One train stage's result through `galaxyprop.training`, on a small store: the study Optuna ran, the model
kept and calibrated, and the served answers on a split."""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pytest

from galaxyprop import training
from galaxyprop.evaluation.metrics import density_metrics
from galaxyprop.tracking import runs as tracking


def split(rng: np.random.Generator, n: int) -> training.Split:
    """Inputs whose first column is the target plus noise of 0.02, in two survey fields."""
    y = rng.uniform(0.05, 0.35, n)
    X = np.column_stack([y + rng.normal(0, 0.02, n), rng.normal(size=n)]).astype(np.float32)
    return X, y, None, np.where(np.arange(n) % 2, "N", "S")


@pytest.mark.slow
def test_train_keeps_the_best_trial_calibrates_it_and_serves_its_intervals(params, store):
    rng = np.random.default_rng(3)
    data = {"train": split(rng, 600), "val": split(rng, 400), "test": split(rng, 2000)}
    params = {**params, "calibration": {**params["calibration"], "min_calibration_rows": 100}}
    spec = training.TrainingSpec.from_params("knn", "z", "knn@toy", params)
    spec = dataclasses.replace(spec, head_params={**spec.head_params, "n_trials": 3})
    study = training.study_name(spec, data)
    assert study.startswith(f"{spec.source}-z-knn@toy-")
    # the key follows the data: other validation galaxies, another study
    assert training.study_name(spec, {**data, "val": split(rng, 400)}) != study
    with tracking.stage_run(store, "train:knn@toy:z") as run:
        result = training.train(spec, data, store, study, "train:knn@toy:z", run.info.run_id, lambda head: None)
    trials = optuna.load_study(study_name=study, storage=store.optuna_storage).trials
    assert result.n_complete + result.n_pruned == len(trials) == 3
    best = min(trials, key=lambda t: t.value)
    assert result.best_trial.number == best.number and result.hyper["k"] == best.params["k"]
    assert result.predictor.head.k == best.params["k"] and result.predictor.calibrated
    # served on 2,000 new galaxies: the point estimate within the noise (0.02), the calibrated 68 % interval
    # covering 68 % (3 binomial sigma: 0.031) and as wide as the noise
    X, y, _, fields = data["test"]
    answers, grid = training.predict_split(result, "test", X, fields), spec.grid
    assert np.median(np.abs(answers.value - y)) < 0.02
    assert abs(density_metrics(answers.calibrated, grid, y)["coverage_68"] - 0.683) < 0.031
    assert 0.012 < np.median(answers.half_width) < 0.04
    # the validation galaxies get their own out-of-fold calibrated densities, not the map applied to themselves
    val = training.predict_split(result, "val", *(data["val"][i] for i in (0, 3)))
    assert val.calibrated.shape == (400, grid.n_bins)


def test_runs_of_different_heads_share_the_names_of_what_means_the_same():
    """knn's k, clap's k_max and RAIL's KNN nneigh_max are all `neighbours` in their runs' params; a name
    shared as it is (learning_rate) stays, and no head maps two of its names onto one."""
    from galaxyprop.heads import FEATURE_HEADS, head_class

    assert training.common_hyperparameters("knn", {"k": 17, "weights": "distance"}) == {"neighbours": 17,
                                                                                       "weights": "distance"}
    assert training.common_hyperparameters("clap", {"k_max": 64, "learning_rate": 1e-3}) == {
        "neighbours": 64, "learning_rate": 1e-3}
    assert training.common_hyperparameters("rail_knn", {"nneigh_max": 7}) == {"neighbours": 7}
    for head in FEATURE_HEADS:
        names = head_class(head).common_names
        assert len(set(names.values())) == len(names), head
