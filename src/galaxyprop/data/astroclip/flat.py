"""The flat AstroCLIP HDF5 layout (what the mock survey writes): top-level `images` (N, H, W, 3) g,r,z
nanomaggies/pixel, `spectra` (N, 7781, 1) in 1e-17 erg/s/cm^2/A on the DESI grid, `redshifts` (N,),
`targetids` (N,); our writer adds `spectra_ivar` (N, 7781, 1), which the reader uses when present.
One chunk per galaxy (what a batch of rows reads), optionally compressed (COMPRESSION): h5py decompresses
on read, so the readers are the same for either.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from galaxyprop.data.astroclip.base import AstroclipFile, decode_ids
from galaxyprop.data.astroclip.layout import N_SPECTRUM_PIXELS, REQUIRED
from galaxyprop.data.io import atomic_path
from galaxyprop.errors import GalaxypropError

#: the HDF5 filters of the per-galaxy chunks: None (the default: the measured read-throughput cost of either
#: filter is far beyond 20 %, see docs/stores.md "Storage"), LZF or gzip level 1, both after the byte shuffle
COMPRESSION = {None: {}, "lzf": {"compression": "lzf", "shuffle": True},
               "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True}}


class AstroclipWriter:
    """Fills a fixed-size AstroCLIP file row block by row block."""

    def __init__(self, handle, n: int, stamp: int, compression: str | None = None):
        if compression not in COMPRESSION:
            raise GalaxypropError(f"HDF5 compression must be one of {list(COMPRESSION)}, got {compression!r}")
        self.handle = handle
        filters = COMPRESSION[compression]
        handle.create_dataset("images", (n, stamp, stamp, 3), dtype="f4", chunks=(1, stamp, stamp, 3), **filters)
        for name in ("spectra", "spectra_ivar"):
            handle.create_dataset(name, (n, N_SPECTRUM_PIXELS, 1), dtype="f4", chunks=(1, N_SPECTRUM_PIXELS, 1),
                                  **filters)
        handle.create_dataset("redshifts", (n,), dtype="f4")
        handle.create_dataset("targetids", (n,), dtype="i8")

    def write(self, start: int, images: np.ndarray, spectra: np.ndarray, spectra_ivar: np.ndarray,
              redshifts: np.ndarray, targetids: np.ndarray) -> None:
        stop = start + len(images)
        self.handle["images"][start:stop] = images
        self.handle["spectra"][start:stop] = spectra[..., None]
        self.handle["spectra_ivar"][start:stop] = spectra_ivar[..., None]
        self.handle["redshifts"][start:stop] = redshifts
        self.handle["targetids"][start:stop] = targetids


@contextmanager
def astroclip_writer(path: str | os.PathLike, n: int, stamp: int,
                     compression: str | None = None) -> Iterator[AstroclipWriter]:
    """An AstroclipWriter on a temporary file that replaces `path` only if the block succeeds."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        yield AstroclipWriter(handle, n, stamp, compression)


def open_hdf5(path: Path):
    """An h5py handle on `path`, or a one-line error."""
    import h5py

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise GalaxypropError(f"{path}: image/spectrum file not found") from None
    except OSError as err:
        raise GalaxypropError(f"{path}: not a readable HDF5 file ({str(err).splitlines()[0]})") from None


def check_datasets(node, where: str) -> None:
    """The four AstroCLIP datasets are in `node` with the right shapes and one length."""
    missing = [k for k in REQUIRED if k not in node]
    if missing:
        raise GalaxypropError(f"{where}: missing datasets {missing} (AstroCLIP layout needs {list(REQUIRED)})")
    images, spectra = node["images"], node["spectra"]
    problems = []
    if images.ndim != 4 or images.shape[-1] != 3:
        problems.append(f"'images' has shape {images.shape}, expected (N, H, W, 3)")
    if spectra.ndim not in (2, 3) or spectra.shape[1] != N_SPECTRUM_PIXELS:
        problems.append(f"'spectra' has shape {spectra.shape}, expected (N, {N_SPECTRUM_PIXELS}, 1)")
    lengths = {k: len(node[k]) for k in REQUIRED}
    if len(set(lengths.values())) != 1:
        problems.append(f"datasets differ in length {lengths}")
    if problems:
        raise GalaxypropError(f"{where}: " + "; ".join(problems))


class FlatFile(AstroclipFile):
    """The flat layout: one file, top-level datasets; it has no split of its own."""

    layout = "flat"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.handle = open_hdf5(self.path)
        try:
            check_datasets(self.handle, str(self.path))
        except GalaxypropError:
            self.close()
            raise
        self.n_rows = len(self.handle["targetids"])

    def index(self) -> tuple[np.ndarray, np.ndarray]:
        return (decode_ids(read_rows(self.handle["targetids"], np.arange(self.n_rows), self.path)),
                np.asarray(read_rows(self.handle["redshifts"], np.arange(self.n_rows), self.path), float))

    def ids(self, rows: np.ndarray) -> np.ndarray:
        return decode_ids(read_rows(self.handle["targetids"], self._rows(rows), self.path))

    def images(self, rows: np.ndarray) -> np.ndarray:
        return read_rows(self.handle["images"], self._rows(rows), self.path)

    def spectra(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        rows = self._rows(rows)
        flux = read_rows(self.handle["spectra"], rows, self.path).reshape(len(rows), N_SPECTRUM_PIXELS)
        if "spectra_ivar" not in self.handle:
            return flux, None
        return flux, read_rows(self.handle["spectra_ivar"], rows, self.path).reshape(len(rows), N_SPECTRUM_PIXELS)

    def origin(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(rows)
        return np.full(len(rows), "", dtype=object), rows

    def file_split(self) -> None:
        return None

    def close(self) -> None:
        self.handle.close()


def read_rows(dataset, rows: np.ndarray, path: Path | str, group: str | None = None,
              first_row: int = 0) -> np.ndarray:
    """Rows in any order. Runs of consecutive rows are read as slices: h5py's fancy indexing is
    several times slower than reading row by row on the per-row chunks of this layout. A chunk
    that cannot be read (corrupt, bad compression) is one error line naming the file, group and
    rows (`first_row`: the global row of the dataset's row 0, for the message)."""
    rows = np.asarray(rows, np.int64)
    unique, inverse = np.unique(rows, return_inverse=True)
    out = np.empty((len(unique),) + dataset.shape[1:], dataset.dtype)
    if len(unique) == 0:
        return out
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(unique)], strict=True):
        try:
            out[start:stop] = dataset[unique[start]:unique[stop - 1] + 1]
        except (OSError, RuntimeError, ValueError) as err:
            detail = (str(err).splitlines() or [""])[0]
            a, b = first_row + unique[start], first_row + unique[stop - 1]
            where = f"group {group}, its rows {unique[start]}-{unique[stop - 1]}" if group is not None else ""
            raise GalaxypropError(
                f"{path}: rows {a}-{b}{f' ({where})' if where else ''} unreadable "
                f"('{dataset.name.lstrip('/')}': {type(err).__name__}: {detail})") from None
    return out[inverse]
