"""`AstroclipFile`: one read interface over every AstroCLIP layout; `AstroclipFile(path)` opens the
reader that fits what `path` holds (flat or grouped HDF5, Parquet shards)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from galaxyprop.data.astroclip.layout import is_parquet_source
from galaxyprop.errors import GalaxypropError


class AstroclipFile(ABC):
    """Read access to AstroCLIP images, spectra, redshifts and target ids, checked once on opening.

    Rows are addressed globally, 0..n_rows-1 (grouped and Parquet layouts: the concatenation of
    their groups / shards in order); `origin(rows)` traces a row back to its group and in-group row.
    """

    layout: str = ""
    path: Path
    n_rows: int

    def __new__(cls, path: str | os.PathLike | None = None, *args, **kwargs):
        if cls is AstroclipFile:
            if path is None:
                raise GalaxypropError("no AstroCLIP image/spectrum file given (was the import_data stage run?)")
            cls = _reader_class(path)
        return super().__new__(cls)

    # -- what each layout implements (FlatFile, GroupedFile, ParquetShards) ------------------
    @abstractmethod
    def index(self) -> tuple[np.ndarray, np.ndarray]:
        """Target ids and redshifts of every row."""

    @abstractmethod
    def ids(self, rows: np.ndarray) -> np.ndarray:
        """Target ids of `rows` (int64, or str where the file stores strings)."""

    @abstractmethod
    def images(self, rows: np.ndarray) -> np.ndarray:
        """Cutouts (n, H, W, 3) as stored."""

    @abstractmethod
    def spectra(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Spectra (n, 7781) and their inverse variances (None when the file has none)."""

    @abstractmethod
    def origin(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group (grouped: its name; Parquet: the shard's name) and in-group row of every row in `rows`."""

    @abstractmethod
    def file_split(self) -> np.ndarray | None:
        """'train' / 'test' of every row as the file itself splits them; None when it has no split."""

    @abstractmethod
    def close(self) -> None:
        """Release the open file handles."""

    # -- shared ------------------------------------------------------------------------------
    def cutouts(self, rows: np.ndarray) -> np.ndarray:
        """Cutouts (n, 3, H, W) float32: what the image models take."""
        return np.ascontiguousarray(np.moveaxis(self.images(rows), -1, 1), dtype=np.float32)

    def _rows(self, rows) -> np.ndarray:
        rows = np.asarray(rows, np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_rows):
            bad = rows[(rows < 0) | (rows >= self.n_rows)][0]
            raise GalaxypropError(f"{self.path}: row {bad} out of range (the file has {self.n_rows} rows)")
        return rows

    def __enter__(self) -> AstroclipFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        n = getattr(self, "n_rows", "?")
        return f"{type(self).__name__}({str(self.path)!r}, layout={self.layout!r}, n_rows={n})"


def _reader_class(path: str | os.PathLike) -> type[AstroclipFile]:
    """The reader for `path`; each reader then checks the content and reports what is wrong."""
    if is_parquet_source(path):
        from galaxyprop.data.astroclip.parquet import ParquetShards

        return ParquetShards
    from galaxyprop.data.astroclip.flat import FlatFile

    try:
        import h5py

        from galaxyprop.data.astroclip.layout import group_names

        with h5py.File(path, "r") as handle:
            grouped = "images" not in handle and group_names(handle) is not None
    except Exception:
        grouped = False
    if grouped:
        from galaxyprop.data.astroclip.grouped import GroupedFile

        return GroupedFile
    return FlatFile


def open_astroclip(path: str | os.PathLike) -> AstroclipFile:
    """The reader for whichever AstroCLIP layout `path` holds (same as `AstroclipFile(path)`)."""
    return AstroclipFile(path)


def decode_ids(values: np.ndarray) -> np.ndarray:
    """Target ids as int64, or as str when stored as strings (bytes in HDF5)."""
    values = np.asarray(values)
    if values.dtype.kind == "S" or (values.dtype.kind == "O" and len(values) and isinstance(values[0], bytes)):
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=str) \
            if len(values) else np.array([], dtype=str)
    if values.dtype.kind in "OU":
        return values.astype(str)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    return values


def gather(rows: np.ndarray, offsets: np.ndarray, read: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
           empty: np.ndarray) -> np.ndarray:
    """Rows (global) read part by part: `read(part, local_rows, global_rows)` for each part
    (group or shard) they fall in; `offsets` are the parts' first global rows plus the total;
    `empty` is the answer for no rows."""
    if len(rows) == 0:
        return empty
    part = np.searchsorted(offsets, rows, side="right") - 1
    out = None
    for p in np.unique(part):
        at = np.flatnonzero(part == p)
        values = read(int(p), rows[at] - offsets[p], rows[at])
        if out is None:
            out = np.empty((len(rows),) + values.shape[1:], values.dtype)
        elif values.dtype != out.dtype and out.dtype.kind in "US" and values.dtype.kind in "US":
            out = out.astype(np.result_type(out.dtype, values.dtype))
        out[at] = values
    return out
