"""The MLflow pyfunc flavour of a galaxyprop predictor: what the registry stores and serves."""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from galaxyprop.errors import GalaxypropError
from galaxyprop.predictor import FIELD_PARAM, Predictor

PREDICTOR_ARTIFACT = "predictor"


class PredictorModel(mlflow.pyfunc.PythonModel):
    """In: what the version was trained on (catalogue fluxes in nanomaggies, g,r,z cutouts
    (N, 3, H, W) in nanomaggies/pixel, or embeddings), and optionally the survey field: the parameter
    `photsys` (N or S) for the whole batch, or a catalogue's PHOTSYS column per row. Out: the head's
    point estimate (`prediction`), the calibrated quantiles q02, q16, q50, q84, q98 (2.3, 15.9, 50,
    84.1, 97.7 %), `spread` = (q84 - q16) / 2 and the calibrated density on the target's grid."""

    def load_context(self, context) -> None:
        self.predictor = Predictor.load(context.artifacts[PREDICTOR_ARTIFACT])

    # The hint (pandas or numpy, which MLflow leaves alone) only silences MLflow's warning: the
    # signature declares the input, columns or a tensor, whichever the version was trained on.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:  # noqa: ARG002
        """Bad input (NaN or infinite values, a wrong shape or column) is the caller's error:
        an MLflow INVALID_PARAMETER_VALUE, which the scoring server answers with HTTP 400."""
        try:
            if self.predictor.input_kind == "catalog":
                model_input = pd.DataFrame(model_input)
            else:
                model_input = np.asarray(model_input)
            if len(model_input) == 0:
                raise GalaxypropError("the input has no rows")
            return self.predictor.predict(model_input, (params or {}).get(FIELD_PARAM) or None)
        except GalaxypropError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None


def input_error(error: Exception) -> str | None:
    """The one-line message of a model's complaint about its input (None for any other error)."""
    if isinstance(error, MlflowException) and error.error_code == "INVALID_PARAMETER_VALUE":
        return str(error.message).splitlines()[0][:500]
    return None
