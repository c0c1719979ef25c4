"""What a registered model holds: the feature encoder and the fitted head, for one target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from galaxyprop.errors import GalaxypropError
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.heads.base import Head

OUTPUT_COLUMNS = ["prediction", "spread"]


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
        joblib.dump(self, path)

    @staticmethod
    def load(path: str | Path) -> "Predictor":
        predictor = joblib.load(path)
        if not isinstance(predictor, Predictor):
            raise GalaxypropError(f"{path}: not a galaxyprop predictor")
        return predictor
