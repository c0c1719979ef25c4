"""Photometry features: AB magnitudes and adjacent colours. The redshift is never a feature."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError
from galaxyprop.physics.magnitudes import flux_to_mag


@dataclass(frozen=True)
class PhotometryFeatures:
    """Magnitudes of `bands` and the colours of neighbouring bands, from fluxes in nanomaggies."""

    bands: tuple[str, ...] = ("u", "g", "r", "i", "z")
    input_kind = "catalog"

    @property
    def input_columns(self) -> list[str]:
        return [schema.flux_column(b) for b in self.bands]

    @property
    def names(self) -> list[str]:
        mags = [f"mag_{b}" for b in self.bands]
        colours = [f"{a}-{b}" for a, b in zip(self.bands[:-1], self.bands[1:], strict=True)]
        return mags + colours

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Feature matrix (n_galaxy, n_feature); a clear error for a missing or unusable flux."""
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise GalaxypropError(f"input lacks flux columns {missing} (nanomaggies) needed by the features")
        flux = frame[self.input_columns].to_numpy(dtype=float)
        bad = ~np.isfinite(flux) | (flux <= 0)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise GalaxypropError(f"row {row}: column '{self.input_columns[col]}' must be a positive "
                                  f"finite flux, got {flux[row, col]} ({int(bad.any(axis=1).sum())} such rows)")
        mags = flux_to_mag(flux)
        return np.hstack([mags, mags[:, :-1] - mags[:, 1:]]).astype(np.float32)
