"""What a registered model holds: the feature encoder and the fitted head, for one target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.special import ndtri

from galaxyprop.data.io import load_object, save_object
from galaxyprop.densities import Grid, quantiles
from galaxyprop.heads.base import Head

QUANTILES = (0.16, 0.50, 0.84)
QUANTILE_COLUMNS = [f"q{round(100 * q):02d}" for q in QUANTILES]
DENSITY_COLUMN = "density"


class FeatureEncoder(Protocol):
    """Turns what a user has into a head's feature matrix: catalogue photometry (a frame), image
    cutouts or spectra (arrays), or precomputed embeddings."""

    input_kind: str
    names: list[str]

    def transform(self, inputs) -> np.ndarray: ...


@dataclass
class Predictor:
    target: str
    features: FeatureEncoder
    head: Head
    grid: Grid | None = None     # the target's density grid (density heads)

    @property
    def input_kind(self) -> str:
        return self.features.input_kind

    @property
    def input_columns(self) -> list[str]:
        """Catalogue columns the model reads (empty for array inputs)."""
        return list(getattr(self.features, "input_columns", []))

    @property
    def gives_density(self) -> bool:
        return self.head.gives_density and self.grid is not None

    def predict(self, inputs: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Point estimate, spread and 16/50/84 % quantiles for every row of `inputs` (as the feature
        encoder takes them); for a density head also its density on `grid` (float32 per row).

        Quantiles come from the density where the head has one, else from a Gaussian of the spread."""
        X = self.features.transform(inputs)
        if self.gives_density:
            result, pdf = self.head.predict_with_pdf(X, self.grid)
            levels = quantiles(pdf, self.grid, np.array(QUANTILES))
        else:
            result, pdf = self.head.predict(X), None
            levels = (np.asarray(result.value, float)[:, None]
                      + np.asarray(result.spread, float)[:, None] * ndtri(np.array(QUANTILES))[None, :])
        out = pd.DataFrame({"prediction": np.asarray(result.value, float),
                            "spread": np.asarray(result.spread, float),
                            **dict(zip(QUANTILE_COLUMNS, levels.T, strict=True))})
        if pdf is not None:
            out[DENSITY_COLUMN] = list(pdf.astype(np.float32))
        return out

    def save(self, path: str | Path) -> None:
        save_object(self, path)

    @staticmethod
    def load(path: str | Path) -> "Predictor":
        return load_object(path, Predictor)
