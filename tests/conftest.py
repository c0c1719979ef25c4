"""Shared fixtures: the project's params and small catalogues in the real SDSS/GALEX/2MASS layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

PROJECT = Path(__file__).resolve().parents[1]


def gst_path() -> Path:
    import kcorrect

    return Path(os.path.dirname(kcorrect.__file__)) / "data" / "test" / "gst_tests_small.fits"


@pytest.fixture(scope="session")
def params() -> dict:
    return yaml.safe_load((PROJECT / "params.yaml").read_text())


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
