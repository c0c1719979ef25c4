"""The MLflow pyfunc flavour of a galaxyprop predictor: what the registry stores and serves."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from galaxyprop.predictor import Predictor

PREDICTOR_ARTIFACT = "predictor"


class PredictorModel(mlflow.pyfunc.PythonModel):
    """What the version was trained on in (catalogue fluxes in nanomaggies, g,r,z cutouts
    (N, 3, H, W) in nanomaggies/pixel, or embeddings), prediction and spread out."""

    def load_context(self, context) -> None:
        self.predictor = Predictor.load(context.artifacts[PREDICTOR_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # noqa: ARG002
        if self.predictor.input_kind == "catalog" and not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return self.predictor.predict(model_input)
