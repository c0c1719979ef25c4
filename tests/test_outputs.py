"""User commands write only where they may: never into the stores, over a pipeline output only with
--force, never to a path that cannot be a file; each refusal is one line and touches nothing."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from galaxyprop.cli.outputs import check_output
from galaxyprop.config import Stores
from galaxyprop.errors import GalaxypropError

from conftest import PROJECT


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A workspace with a store and a dvc.lock naming two outputs."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns/mlflow.db").write_bytes(b"SQLite format 3\x00 the tracking store")
    (tmp_path / "data/prepared").mkdir(parents=True)
    (tmp_path / "data/prepared/test.parquet").write_bytes(b"the test split")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  prepare:\n    cmd: x\n    outs:\n"
                                       "    - path: data/prepared\n      md5: abc.dir\n"
                                       "    - path: reports/metrics.json\n      md5: def\n")
    return Stores("sqlite:///mlruns/mlflow.db", (tmp_path / "mlruns/artifacts").as_uri(),
                  "sqlite:///mlruns/optuna.db", "galaxyprop-test")


@pytest.mark.parametrize("path, force, message", [
    ("", False, "--output: an empty path"),
    ("/", False, "--output /: a folder"),
    ("data", False, "--output data: a folder"),
    ("mlruns/mlflow.db", False, "inside the project's stores"),
    ("mlruns/mlflow.db", True, "inside the project's stores"),           # never, even forced
    ("mlruns/artifacts/x.parquet", True, "inside the project's stores"),
    ("data/prepared/test.parquet", False, "inside the pipeline's output data/prepared (dvc.lock)"),
    ("reports/metrics.json", False, "inside the pipeline's output reports/metrics.json"),
])
def test_refused_outputs(workspace, path, force, message):
    with pytest.raises(GalaxypropError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_output(path, "--output", workspace, force)


def test_allowed_outputs(workspace):
    assert check_output("z.parquet", "--output", workspace) == Path("z.parquet")
    assert check_output("data/mine.parquet", "--output", workspace) == Path("data/mine.parquet")
    assert check_output("data/prepared/test.parquet", "--output", workspace, force=True)
    assert check_output("batches/north", "--out", workspace, folder=True)
    Path("afile").write_text("x")
    with pytest.raises(GalaxypropError, match="--out afile: an existing file"):
        check_output("afile", "--out", workspace, folder=True)


@pytest.mark.slow
def test_predict_onto_the_tracking_store_is_one_line_and_changes_nothing(tmp_path):
    """The probe that replaced mlruns/mlflow.db with a Parquet file: refused before any store is opened."""
    import shutil

    for name in ("params.yaml", "mock.yaml", "sources.yaml"):
        shutil.copy(PROJECT / name, tmp_path / name)
    (tmp_path / "mlruns").mkdir()
    store = tmp_path / "mlruns/mlflow.db"
    store.write_bytes(b"SQLite format 3\x00 pretend")
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    out = subprocess.run([sys.executable, "-m", "galaxyprop.cli.main", "predict", "z", "--input", "survey.h5",
                          "--output", "mlruns/mlflow.db"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "inside the project's stores" in out.stderr
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
