"""Shared fixtures: the project's params and small catalogues in the real SDSS/GALEX/2MASS layout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

PROJECT = Path(__file__).resolve().parents[1]


def _share_the_cores() -> None:
    """Under pytest-xdist (`make test`), each worker process and what it starts (a `dvc repro`, a server)
    gets its share of the cores for OpenMP, BLAS, torch and faiss, so that the workers never oversubscribe."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        from galaxyprop.resources import cores, limit_threads

        limit_threads(max(1, cores() // workers))


_share_the_cores()


def gst_path() -> Path:
    import kcorrect

    return Path(os.path.dirname(kcorrect.__file__)) / "data" / "test" / "gst_tests_small.fits"


@pytest.fixture(scope="session")
def params() -> dict:
    from galaxyprop.config import load_params

    return load_params(PROJECT / "params.yaml")


@pytest.fixture(scope="module")
def galaxies(params):
    """1,500 real SDSS galaxies (kcorrect's file) in the galaxyprop layout: 1,200 to train on, 300 to test."""
    from galaxyprop.data.catalog import CatalogSpec, read_catalog

    frame, _ = read_catalog(gst_path(), CatalogSpec.from_params(sdss_data(params)), max_rows=1500, seed=0)
    return frame.iloc[:1200], frame.iloc[1200:]


def desi_targets(params: dict, names=None) -> dict:
    """The FastSpecFit columns of the targets (default: train.targets), as the prepare stage reads them."""
    from galaxyprop.data.targets import target_columns

    return target_columns(params["targets"], "desi", {"kind": "desi"}, list(names or params["train"]["targets"]))


def sdss_data(params: dict) -> dict:
    """The column map of the built-in SDSS source with the pipeline's redshift range."""
    return {**params["data"]["sources"]["sdss_gst"], "z_min": params["data"]["z_min"], "z_max": params["data"]["z_max"]}


def mock_config(params: dict, **changes):
    """The mock survey's config from params.yaml with top-level or `group.key` overrides."""
    import copy

    from galaxyprop.mock.config import MockConfig

    mock = copy.deepcopy(params["mock"])
    for key, value in changes.items():
        node = mock
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return MockConfig.from_params(mock)


def write_gst_like(path: Path, rows: slice | np.ndarray, edit=None) -> Path:
    """Write real rows of kcorrect's gst_tests_small.fits to `path` with the same HDU and columns.

    `edit(data)` may alter the record array first (to inject bad rows).
    """
    with fits.open(gst_path()) as hdul:
        data = hdul[1].data[rows].copy()
        name = hdul[1].name
    if edit is not None:
        edit(data)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(data, name=name)]).writeto(path)
    return path


@pytest.fixture
def small_catalog(tmp_path: Path) -> Path:
    return write_gst_like(tmp_path / "small.fits", slice(0, 200))


@contextmanager
def mlflow_store(uri: str) -> Iterator[None]:
    """Point MLflow's tracking *and* registry at `uri` for a block, then forget both: a registry URI
    left behind (it also lands in MLFLOW_REGISTRY_URI) would resolve `models:/` in later tests."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri("")
        os.environ.pop("MLFLOW_REGISTRY_URI", None)


@pytest.fixture
def store(tmp_path):
    """A fresh SQLite MLflow store (tracking and registry) for one test."""
    from galaxyprop.config import Stores
    from galaxyprop.tracking import runs as tracking

    stores = Stores(f"sqlite:///{tmp_path}/mlflow.db", (tmp_path / "artifacts").as_uri(),
                    f"sqlite:///{tmp_path}/optuna.db", "galaxyprop-test")
    with mlflow_store(stores.tracking_uri):
        tracking.connect(stores)
        yield stores


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of this machine's installation, in a temporary cluster for the session:
    `postgresql://postgres@127.0.0.1:<port>` with the databases `mlflow` and `optuna`."""
    from postgres_server import postgres_server

    with postgres_server() as base:
        yield base
