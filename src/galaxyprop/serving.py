"""The MLflow pyfunc flavour of a galaxyprop predictor: what the registry stores and serves."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from galaxyprop.predictor import Predictor

PREDICTOR_ARTIFACT = "predictor"


class PredictorModel(mlflow.pyfunc.PythonModel):
    """Catalogue photometry in (fluxes in nanomaggies), prediction and spread out."""

    def load_context(self, context) -> None:
        self.predictor = Predictor.load(context.artifacts[PREDICTOR_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # noqa: ARG002
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.predictor.predict_frame(frame)
