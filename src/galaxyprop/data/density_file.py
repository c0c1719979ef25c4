"""Densities on disk: one HDF5 file per model and split, keyed by `TARGETID`, with the grid.

Datasets: `TARGETID` (n,), `pdf` (n, n_bins) float32 densities per unit target, `bin_edges`
(n_bins + 1,) and `bin_centres` (n_bins,); attributes: `target`, `head`, `split`.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from galaxyprop.data.io import atomic_path
from galaxyprop.densities import Grid
from galaxyprop.errors import GalaxypropError


def write_densities(path: str | os.PathLike, ids: np.ndarray, pdf: np.ndarray, grid: Grid, **attributes) -> None:
    if pdf.shape != (len(ids), grid.n_bins):
        raise GalaxypropError(f"{path}: densities of shape {pdf.shape} for {len(ids)} ids on {grid.n_bins} bins")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("TARGETID", data=np.asarray(ids, np.int64))
        handle.create_dataset("pdf", data=np.asarray(pdf, np.float32), compression="gzip", shuffle=True)
        handle.create_dataset("bin_edges", data=grid.edges)
        handle.create_dataset("bin_centres", data=grid.centres)
        handle.attrs.update({k: str(v) for k, v in attributes.items()})


def read_densities(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, Grid]:
    """ids, densities (float64) and their grid, or a clear error for a file in another layout."""
    try:
        with h5py.File(path, "r") as handle:
            missing = {"TARGETID", "pdf", "bin_edges"} - set(handle)
            if missing:
                raise GalaxypropError(f"{path}: not a densities file (missing {sorted(missing)})")
            edges = handle["bin_edges"][:]
            ids, pdf = handle["TARGETID"][:], handle["pdf"][:].astype(float)
    except OSError as err:
        raise GalaxypropError(f"{path}: cannot read densities ({err})") from None
    grid = Grid(float(edges[0]), float(edges[-1]), len(edges) - 1)
    if not np.allclose(edges, grid.edges):
        raise GalaxypropError(f"{path}: bin_edges are not equal bins")
    return ids, pdf, grid
