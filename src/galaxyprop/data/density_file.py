"""Densities on disk: one HDF5 file per model, keyed by `TARGETID`, with the grid.

Datasets: `TARGETID` (n,) (int64, or UTF-8 strings for catalogues with string ids), `split` (n,)
the split of each row (`val`, `test`), `pdf` (n, n_bins) float32 served (calibrated) densities per
unit target, `pdf_raw` the head's own densities before calibration (absent when they are the same),
`bin_edges` (n_bins + 1,) and `bin_centres` (n_bins,); attributes: `target`, `head`, `calibration`.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from galaxyprop.data.io import atomic_path
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid


def write_densities(path: str | os.PathLike, ids: np.ndarray, pdf: np.ndarray, grid: Grid,
                    splits: np.ndarray | None = None, raw: np.ndarray | None = None, **attributes) -> None:
    ids = np.asarray(ids)
    for name, array in (("pdf", pdf), ("pdf_raw", raw)):
        if array is not None and array.shape != (len(ids), grid.n_bins):
            raise GalaxypropError(f"{path}: {name} of shape {array.shape} for {len(ids)} ids on {grid.n_bins} bins")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        if ids.dtype.kind in "iu":
            handle.create_dataset("TARGETID", data=ids.astype(np.int64))
        else:
            handle.create_dataset("TARGETID", data=ids.astype(str).astype(object), dtype=h5py.string_dtype())
        if splits is not None:
            handle.create_dataset("split", data=np.asarray(splits, dtype=str).astype(object), dtype=h5py.string_dtype())
        handle.create_dataset("pdf", data=np.asarray(pdf, np.float32), compression="gzip", shuffle=True)
        if raw is not None:
            handle.create_dataset("pdf_raw", data=np.asarray(raw, np.float32), compression="gzip", shuffle=True)
        handle.create_dataset("bin_edges", data=grid.edges)
        handle.create_dataset("bin_centres", data=grid.centres)
        handle.attrs.update({k: str(v) for k, v in attributes.items()})


def read_densities(path: str | os.PathLike, split: str | None = None,
                   raw: bool = False) -> tuple[np.ndarray, np.ndarray, Grid]:
    """ids, densities (float64) and their grid, or a clear error for a file in another layout.
    `split` keeps the rows of one split; `raw` reads the head's densities before calibration."""
    name = "pdf_raw" if raw else "pdf"
    try:
        with h5py.File(path, "r") as handle:
            missing = {"TARGETID", "pdf", "bin_edges"} - set(handle)
            if missing:
                raise GalaxypropError(f"{path}: not a densities file (missing {sorted(missing)})")
            if raw and name not in handle:
                name = "pdf"                       # the served densities are the head's own
            edges = handle["bin_edges"][:]
            ids, pdf = handle["TARGETID"][:], handle[name][:].astype(float)
            rows = np.ones(len(ids), bool)
            if split is not None:
                if "split" not in handle:
                    raise GalaxypropError(f"{path}: has no 'split' dataset to select '{split}' rows")
                rows = handle["split"].asstr()[:] == split
    except OSError as err:
        raise GalaxypropError(f"{path}: cannot read densities ({err})") from None
    if ids.dtype.kind in "OSU":
        ids = np.asarray([i.decode() if isinstance(i, bytes) else str(i) for i in ids], dtype=object)
    grid = Grid(float(edges[0]), float(edges[-1]), len(edges) - 1)
    if not np.allclose(edges, grid.edges):
        raise GalaxypropError(f"{path}: bin_edges are not equal bins")
    return ids[rows], pdf[rows], grid
