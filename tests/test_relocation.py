"""A workspace copied or moved elsewhere reads and writes its own MLflow store, not the original's."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from galaxyprop.config import Stores
from galaxyprop.errors import GalaxypropError
from galaxyprop.tracking import runs as tracking
from galaxyprop.tracking.relocation import moved_prefixes

from conftest import mlflow_store


class Doubling(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input * 2


def forget_cached_stores() -> None:
    """MLflow caches a store per URI in the process: a relative `sqlite:///mlruns/...` opened in another
    folder must be opened afresh (each galaxyprop command is a process of its own)."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._model_registry.utils import _get_store_registry
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    type(_tracking_store_registry)._get_store_with_resolved_uri.cache_clear()
    type(_get_store_registry())._get_store_with_resolved_uri.cache_clear()
    for store in (SqlAlchemyStore, RegistryStore):
        for engine in getattr(store, "_engine_map", {}).values():
            engine.dispose()
        getattr(store, "_engine_map", {}).clear()


def workspace_stores() -> Stores:
    """The default run's stores, as params give them, in the current folder."""
    return Stores("sqlite:///mlruns/mlflow.db", Path("mlruns/artifacts").resolve().as_uri(),
                  "sqlite:///mlruns/optuna.db", "galaxyprop-test")


def test_the_moved_part_of_two_artifact_roots():
    assert moved_prefixes("file:///a/ws/mlruns/artifacts/e", "file:///b/c/ws/mlruns/artifacts/e") == ("/a", "/b/c")
    assert moved_prefixes("/a/ws/mlruns/0", "/a/ws/mlruns/0") is None


@pytest.mark.slow
def test_a_copied_workspace_uses_its_own_store_after_the_original_is_gone(tmp_path, monkeypatch, caplog):
    original, copy = tmp_path / "original", tmp_path / "elsewhere" / "copy"
    original.mkdir()
    monkeypatch.chdir(original)
    forget_cached_stores()
    (original / "note.txt").write_text("from the run")
    with mlflow_store("sqlite:///mlruns/mlflow.db"):
        with tracking.stage_run(workspace_stores(), "train:knn:z") as run:
            mlflow.log_artifact("note.txt")
            mlflow.pyfunc.log_model(name="model", python_model=Doubling(), registered_model_name="doubling")
        run_id = run.info.run_id
    shutil.copytree(original, copy)
    shutil.rmtree(original)                                  # moved: the old paths exist no more
    monkeypatch.chdir(copy)
    forget_cached_stores()
    with mlflow_store("sqlite:///mlruns/mlflow.db"):
        tracking.connect(workspace_stores())
        assert "now point into" in caplog.text and str(tmp_path / "elsewhere") in caplog.text
        client = mlflow.tracking.MlflowClient()
        assert client.get_run(run_id).info.artifact_uri.startswith((copy / "mlruns").as_uri())
        fetched = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="note.txt", dst_path=str(tmp_path))
        assert Path(fetched).read_text() == "from the run"
        doubled = mlflow.pyfunc.load_model("models:/doubling/1").predict(pd.DataFrame({"x": [2]}))
        assert list(doubled["x"]) == [4]
        with tracking.stage_run(workspace_stores(), "evaluate") as later:
            mlflow.log_artifact(str(copy / "note.txt"))
        assert (copy / "mlruns/artifacts/galaxyprop-test" / later.info.run_id / "artifacts/note.txt").exists()
        caplog.clear()
        tracking.connect(workspace_stores())                 # once: the store is this workspace's now
        assert "now point into" not in caplog.text


def test_a_store_whose_artifacts_were_left_behind_says_what_to_do(tmp_path, monkeypatch):
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    monkeypatch.chdir(original)
    forget_cached_stores()
    with mlflow_store("sqlite:///mlruns/mlflow.db"):
        tracking.connect(workspace_stores())
    copy.mkdir()
    shutil.copytree(original / "mlruns", copy / "mlruns", ignore=shutil.ignore_patterns("artifacts"))
    monkeypatch.chdir(copy)
    forget_cached_stores()
    refused = pytest.raises(GalaxypropError, match="copy the workspace with its mlruns/")
    with mlflow_store("sqlite:///mlruns/mlflow.db"), refused:
        tracking.connect(workspace_stores())
