"""The AstroCLIP HDF5 layout: `images` (N, H, W, 3) g,r,z nanomaggies/pixel, `spectra` (N, 7781, 1)
in 1e-17 erg/s/cm^2/A on the DESI grid, `redshifts` (N,), `targetids` (N,); our writer adds
`spectra_ivar` (N, 7781, 1), which the reader uses when present.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from galaxyprop.data.io import atomic_path
from galaxyprop.errors import GalaxypropError

N_SPECTRUM_PIXELS = 7781
DESI_WAVE = 3600.0 + 0.8 * np.arange(N_SPECTRUM_PIXELS)   # 3600-9824 A, 0.8 A pixels
REQUIRED = ("images", "spectra", "redshifts", "targetids")


class AstroclipWriter:
    """Fills a fixed-size AstroCLIP file row block by row block."""

    def __init__(self, handle, n: int, stamp: int):
        self.handle = handle
        handle.create_dataset("images", (n, stamp, stamp, 3), dtype="f4", chunks=(1, stamp, stamp, 3))
        for name in ("spectra", "spectra_ivar"):
            handle.create_dataset(name, (n, N_SPECTRUM_PIXELS, 1), dtype="f4", chunks=(1, N_SPECTRUM_PIXELS, 1))
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
def astroclip_writer(path: str | os.PathLike, n: int, stamp: int) -> Iterator[AstroclipWriter]:
    """An AstroclipWriter on a temporary file that replaces `path` only if the block succeeds."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            yield AstroclipWriter(handle, n, stamp)


class AstroclipFile:
    """Read access to an AstroCLIP-layout file, checked once on opening."""

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        try:
            self.handle = h5py.File(self.path, "r")
        except FileNotFoundError:
            raise GalaxypropError(f"{self.path}: image/spectrum file not found") from None
        except OSError as err:
            raise GalaxypropError(f"{self.path}: not a readable HDF5 file ({str(err).splitlines()[0]})") from None
        missing = [k for k in REQUIRED if k not in self.handle]
        if missing:
            self.close()
            raise GalaxypropError(f"{self.path}: missing datasets {missing} (AstroCLIP layout needs {list(REQUIRED)})")
        n = len(self.handle["targetids"])
        images, spectra = self.handle["images"], self.handle["spectra"]
        problems = []
        if images.ndim != 4 or images.shape[-1] != 3:
            problems.append(f"'images' has shape {images.shape}, expected (N, H, W, 3)")
        if spectra.ndim not in (2, 3) or spectra.shape[1] != N_SPECTRUM_PIXELS:
            problems.append(f"'spectra' has shape {spectra.shape}, expected (N, {N_SPECTRUM_PIXELS}, 1)")
        lengths = {k: len(self.handle[k]) for k in REQUIRED}
        if len(set(lengths.values())) != 1:
            problems.append(f"datasets differ in length {lengths}")
        if problems:
            self.close()
            raise GalaxypropError(f"{self.path}: " + "; ".join(problems))
        self.n_rows = n

    def index(self) -> tuple[np.ndarray, np.ndarray]:
        """Target ids and redshifts of every row."""
        return np.asarray(self.handle["targetids"][:]), np.asarray(self.handle["redshifts"][:], float)

    def images(self, rows: np.ndarray) -> np.ndarray:
        """Cutouts (n, H, W, 3) as stored."""
        return _read_rows(self.handle["images"], rows)

    def cutouts(self, rows: np.ndarray) -> np.ndarray:
        """Cutouts (n, 3, H, W) float32: what the image models take."""
        return np.ascontiguousarray(np.moveaxis(self.images(rows), -1, 1), dtype=np.float32)

    def spectra(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Spectra (n, 7781) and their inverse variances (None when the file has none)."""
        flux = _read_rows(self.handle["spectra"], rows).reshape(len(rows), N_SPECTRUM_PIXELS)
        if "spectra_ivar" not in self.handle:
            return flux, None
        return flux, _read_rows(self.handle["spectra_ivar"], rows).reshape(len(rows), N_SPECTRUM_PIXELS)

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> "AstroclipFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_rows(dataset, rows: np.ndarray) -> np.ndarray:
    """Rows in any order. Runs of consecutive rows are read as slices: h5py's fancy indexing is
    several times slower than reading row by row on the per-row chunks of this layout."""
    rows = np.asarray(rows, np.int64)
    unique, inverse = np.unique(rows, return_inverse=True)
    out = np.empty((len(unique),) + dataset.shape[1:], dataset.dtype)
    if len(unique) == 0:
        return out
    breaks = np.flatnonzero(np.diff(unique) != 1) + 1
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(unique)], strict=True):
        out[start:stop] = dataset[unique[start]:unique[stop - 1] + 1]
    return out[inverse]
