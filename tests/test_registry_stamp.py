"""The register stage's instant answer: the store holds reports/registered.json's candidates, registered
from these inputs, or it does not (a changed input, a moved alias, a deleted store, an interrupted run)."""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from galaxyprop.registry.stamp import INPUTS_TAG, fingerprint, mark_registered, store_holds

NAME = "galaxyprop-z"


def versions(tmp_path, n: int) -> list[str]:
    """`n` registry entries of NAME (aliases need no model files)."""
    client = MlflowClient()
    client.create_registered_model(NAME)
    source = tmp_path / "artifacts" / "model"
    source.mkdir(parents=True)
    return [client.create_model_version(NAME, source.as_uri()).version for _ in range(n)]


def test_the_store_holds_the_candidates_of_these_inputs_until_anything_differs(store, tmp_path):
    first, second = versions(tmp_path, 2)
    client = MlflowClient()
    client.set_registered_model_alias(NAME, "candidate", first)
    experiment = mlflow.get_experiment_by_name(store.experiment)
    inputs = fingerprint(["metrics md5"], [("models/z/knn@image/predictor.joblib", "md5")], "data", {"seed": 1})
    expected = {NAME: str(first)}
    assert not store_holds(store.tracking_uri, store.experiment, expected, inputs)   # never marked: register
    mark_registered(experiment.experiment_id, inputs)
    assert client.get_experiment(experiment.experiment_id).tags[INPUTS_TAG] == inputs
    assert store_holds(store.tracking_uri, store.experiment, expected, inputs)
    # any input changed: a new fingerprint (bytes, params, order of files)
    assert fingerprint(["metrics md5"], [], "data", {"seed": 2}) != fingerprint(["metrics md5"], [], "data", {"seed": 1})
    assert not store_holds(store.tracking_uri, store.experiment, expected, fingerprint("other"))
    # the candidate alias moved (by hand, or the MLflow UI) away from what registered.json says
    client.set_registered_model_alias(NAME, "candidate", second)
    assert not store_holds(store.tracking_uri, store.experiment, expected, inputs)
    assert store_holds(store.tracking_uri, store.experiment, {NAME: str(second)}, inputs)
    # a model registered.json names that the store lacks; another experiment; a server store; a deleted store
    assert not store_holds(store.tracking_uri, store.experiment, {**expected, "galaxyprop-kcorr_r01": "1"}, inputs)
    assert not store_holds(store.tracking_uri, "galaxyprop-elsewhere", {NAME: str(second)}, inputs)
    assert not store_holds("http://127.0.0.1:5000", store.experiment, {NAME: str(second)}, inputs)
    assert not store_holds(f"sqlite:///{tmp_path}/gone.db", store.experiment, {NAME: str(second)}, inputs)
