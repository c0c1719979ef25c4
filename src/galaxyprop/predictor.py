"""What a registered model holds: the feature encoder and the fitted head, for one target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from galaxyprop.data.io import load_object, save_object
from galaxyprop.heads.base import Head


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

    @property
    def input_kind(self) -> str:
        return self.features.input_kind

    @property
    def input_columns(self) -> list[str]:
        """Catalogue columns the model reads (empty for array inputs)."""
        return list(getattr(self.features, "input_columns", []))

    def predict(self, inputs: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Prediction and spread for every row of `inputs` (as the feature encoder takes them)."""
        result = self.head.predict(self.features.transform(inputs))
        return pd.DataFrame({"prediction": np.asarray(result.value, float),
                             "spread": np.asarray(result.spread, float)})

    def save(self, path: str | Path) -> None:
        save_object(self, path)

    @staticmethod
    def load(path: str | Path) -> "Predictor":
        return load_object(path, Predictor)
