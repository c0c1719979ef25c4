"""What a registered model holds: the feature encoder and the fitted head, for one target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.data.io import load_object, save_object
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.heads.base import Head



@dataclass
class Predictor:
    target: str
    features: PhotometryFeatures
    head: Head

    @property
    def input_columns(self) -> list[str]:
        return self.features.input_columns

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Prediction and spread for every row of a catalogue in the galaxyprop layout."""
        result = self.head.predict(self.features.transform(frame))
        return pd.DataFrame({"prediction": np.asarray(result.value, float),
                             "spread": np.asarray(result.spread, float)})

    def save(self, path: str | Path) -> None:
        save_object(self, path)

    @staticmethod
    def load(path: str | Path) -> "Predictor":
        return load_object(path, Predictor)
