"""The grouped AstroCLIP HDF5 layout of the release file `astroclip_desi.1.1.5.h5`: groups "0".."9",
each holding `images` (N_k, 152, 152, 3), `spectra` (N_k, 7781, 1), `redshifts`, `targetids`.

Rows are addressed globally, the groups concatenated in numeric order ("10" after "9"). AstroCLIP's
own split (its HuggingFace builder): rows [0, int(0.8 N_k)) of each group train, the rest test.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from galaxyprop.data.astroclip.base import AstroclipFile, decode_ids, gather
from galaxyprop.data.astroclip.flat import check_datasets, open_hdf5, read_rows
from galaxyprop.data.astroclip.layout import N_SPECTRUM_PIXELS, TRAIN_FRACTION, group_names
from galaxyprop.errors import GalaxypropError


class GroupedFile(AstroclipFile):
    """The grouped layout: numeric groups read as one table."""

    layout = "grouped"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.handle = open_hdf5(self.path)
        try:
            self.groups = group_names(self.handle) or []
            if not self.groups:
                raise GalaxypropError(f"{self.path}: no numeric groups '0', '1', ... (grouped AstroCLIP layout)")
            stamps = {}
            for name in self.groups:
                check_datasets(self.handle[name], f"{self.path} (group {name})")
                stamps[name] = self.handle[name]["images"].shape[1:]
            if len(set(stamps.values())) != 1:
                raise GalaxypropError(f"{self.path}: groups have different image shapes "
                                      f"{ {k: tuple(v) for k, v in stamps.items()} }")
            self.lengths = np.array([len(self.handle[g]["targetids"]) for g in self.groups], np.int64)
            self.offsets = np.r_[0, np.cumsum(self.lengths)]
            self.has_ivar = all("spectra_ivar" in self.handle[g] for g in self.groups)
        except GalaxypropError:
            self.close()
            raise
        self.n_rows = int(self.offsets[-1])

    def _read(self, dataset: str, rows: np.ndarray) -> np.ndarray:
        def read(part: int, local: np.ndarray, _: np.ndarray) -> np.ndarray:
            name = self.groups[part]
            return read_rows(self.handle[name][dataset], local, self.path, name, int(self.offsets[part]))

        sample = self.handle[self.groups[0]][dataset]
        return gather(rows, self.offsets, read, np.empty((0,) + sample.shape[1:], sample.dtype))

    def index(self) -> tuple[np.ndarray, np.ndarray]:
        everything = np.arange(self.n_rows)
        return decode_ids(self._read("targetids", everything)), np.asarray(self._read("redshifts", everything), float)

    def ids(self, rows: np.ndarray) -> np.ndarray:
        return decode_ids(self._read("targetids", self._rows(rows)))

    def images(self, rows: np.ndarray) -> np.ndarray:
        return self._read("images", self._rows(rows))

    def spectra(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        rows = self._rows(rows)
        flux = self._read("spectra", rows).reshape(len(rows), N_SPECTRUM_PIXELS)
        if not self.has_ivar:
            return flux, None
        return flux, self._read("spectra_ivar", rows).reshape(len(rows), N_SPECTRUM_PIXELS)

    def origin(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(rows)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        return np.asarray(self.groups, dtype=object)[part], rows - self.offsets[part]

    def file_split(self) -> np.ndarray:
        return np.concatenate([np.where(np.arange(n) < int(TRAIN_FRACTION * n), "train", "test").astype(object)
                               for n in self.lengths])

    def close(self) -> None:
        self.handle.close()
