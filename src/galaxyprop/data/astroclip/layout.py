"""What every AstroCLIP layout shares: the DESI spectrum grid, dataset and column names, AstroCLIP's
own train/test rule, and the detector that tells the layouts apart.

Layouts: `flat` (one HDF5 file with top-level `images`, `spectra`, `redshifts`, `targetids`, our
mock survey's layout), `grouped` (the release file `astroclip_desi.1.1.5.h5`: groups "0".."9" each
holding those four datasets) and `parquet` (the HuggingFace shards: columns `image`, `spectrum`,
`redshift`, `targetid`, split named in the shard file name).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

N_SPECTRUM_PIXELS = 7781
DESI_WAVE = 3600.0 + 0.8 * np.arange(N_SPECTRUM_PIXELS)   # 3600-9824 A, 0.8 A pixels
#: HDF5 datasets (flat: top level; grouped: in every group).
REQUIRED = ("images", "spectra", "redshifts", "targetids")
#: Parquet columns, as the AstroCLIP HuggingFace dataset names them.
COLUMNS = {"images": "image", "spectra": "spectrum", "redshifts": "redshift", "targetids": "targetid"}
#: AstroCLIP trains on rows [0, int(0.8 N)) of every group and tests on the rest.
TRAIN_FRACTION = 0.8
LAYOUTS = ("flat", "grouped", "parquet")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def is_glob(path: str | os.PathLike) -> bool:
    return glob.has_magic(str(path))


def is_parquet_source(path: str | os.PathLike) -> bool:
    """A .parquet file, a glob or a folder: what the Parquet reader is asked to open."""
    p = Path(path)
    return is_glob(path) or p.is_dir() or p.suffix.lower() == ".parquet"


def group_names(handle) -> list[str] | None:
    """The numeric group names of a grouped file in numeric order, or None when it has none."""
    import h5py

    names = [k for k in handle if k.isdigit() and isinstance(handle[k], h5py.Group)]
    return sorted(names, key=int) if names else None


def astroclip_layout(path: str | os.PathLike) -> str | None:
    """'flat', 'grouped' or 'parquet' for what `path` holds; None when it is no AstroCLIP layout
    (missing, unreadable, or e.g. a Parquet catalogue without image and spectrum columns)."""
    if is_parquet_source(path):
        from galaxyprop.data.astroclip.parquet import shard_paths

        try:
            shards = shard_paths(path)
            import pyarrow.parquet as pq

            names = set(pq.read_schema(shards[0][0]).names)
        except Exception:
            return None
        return "parquet" if set(COLUMNS.values()) <= names else None
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if all(k in handle for k in REQUIRED):
                return "flat"
            groups = group_names(handle)
            if groups and all(k in handle[g] for g in groups for k in REQUIRED):
                return "grouped"
    except Exception:
        return None
    return None
