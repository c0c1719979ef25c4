"""The MLflow pyfunc flavour of a galaxyprop predictor: what the registry stores and serves."""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from galaxyprop.errors import GalaxypropError
from galaxyprop.features.multimodal import MULTIMODAL, Multimodal
from galaxyprop.registry.predictor import FIELD_PARAM, Predictor

PREDICTOR_ARTIFACT = "predictor"
#: The two named tensors a multimodal model takes.
CUTOUTS, FLUXES = "cutouts", "fluxes"


def multimodal_tensors(inputs: Multimodal, flux_columns: list[str]) -> dict[str, np.ndarray]:
    """A multimodal model's pyfunc input: the cutouts and the catalogue's flux columns, as float32 tensors."""
    missing = [c for c in flux_columns if c not in inputs.catalog.columns]
    if missing:
        raise GalaxypropError(f"the catalogue lacks the flux columns {missing} the model takes")
    return {CUTOUTS: np.ascontiguousarray(inputs.images, dtype=np.float32),
            FLUXES: np.ascontiguousarray(inputs.catalog[flux_columns].to_numpy(), dtype=np.float32)}


def tensors_input(tensors, flux_columns: list[str]) -> Multimodal:
    """The `Multimodal` inputs from the pyfunc's two named tensors; a clear error for a missing one."""
    if not isinstance(tensors, dict):
        raise GalaxypropError(f"this model takes two named inputs, '{CUTOUTS}' (N, 3, H, W) and '{FLUXES}' "
                              f"(N, {len(flux_columns)}: {', '.join(flux_columns)}), not one array")
    missing = [k for k in (CUTOUTS, FLUXES) if k not in tensors or tensors[k] is None]
    if missing:
        raise GalaxypropError(f"the request lacks the input '{missing[0]}': this model takes '{CUTOUTS}' "
                              f"(N, 3, H, W) and '{FLUXES}' (N, {len(flux_columns)}: {', '.join(flux_columns)})")
    fluxes = np.asarray(tensors[FLUXES], dtype=float)
    if fluxes.ndim != 2 or fluxes.shape[1] != len(flux_columns):
        raise GalaxypropError(f"'{FLUXES}' must have shape (N, {len(flux_columns)}) ({', '.join(flux_columns)}), "
                              f"got {fluxes.shape}")
    return Multimodal(np.asarray(tensors[CUTOUTS]), pd.DataFrame(fluxes, columns=flux_columns)).checked()


class PredictorModel(mlflow.pyfunc.PythonModel):
    """In: what the version was trained on (catalogue fluxes in nanomaggies, g,r,z cutouts
    (N, 3, H, W) in nanomaggies/pixel, both as the named tensors `cutouts` and `fluxes`, or
    embeddings), and optionally the survey field: the parameter
    `photsys` (N or S) for the whole batch, or a catalogue's PHOTSYS column per row. Out: the head's
    point estimate (`prediction`), the calibrated quantiles q02, q16, q50, q84, q98 (2.3, 15.9, 50,
    84.1, 97.7 %), `spread` = (q84 - q16) / 2 and the calibrated density on the target's grid."""

    def load_context(self, context) -> None:
        self.predictor = Predictor.load(context.artifacts[PREDICTOR_ARTIFACT])

    # The hint (pandas or numpy, which MLflow leaves alone) only silences MLflow's warning: the
    # signature declares the input, columns or a tensor, whichever the version was trained on.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Bad input (NaN or infinite values, a wrong shape or column) is the caller's error:
        an MLflow INVALID_PARAMETER_VALUE, which the scoring server answers with HTTP 400."""
        try:
            if self.predictor.input_kind == "catalog":
                model_input = pd.DataFrame(model_input)
            elif self.predictor.input_kind == MULTIMODAL:
                model_input = tensors_input(model_input, self.predictor.input_columns)
            else:
                model_input = np.asarray(model_input)
            if len(model_input) == 0:
                raise GalaxypropError("the input has no rows")
            return self.predictor.predict(model_input, (params or {}).get(FIELD_PARAM) or None)
        except GalaxypropError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None


MAX_MESSAGE = 500


def concise_error(message: str) -> str:
    """The reason of an MLflow input error, without the echo of the payload MLflow puts before it
    ("Failed to predict data '<the array>'. Error: Failed to enforce schema of data '<the array>' with
    schema '...'. Error: <the reason>"): the text after the last "Error: ", on one line."""
    text = str(message)
    reason = text.rsplit("Error: ", 1)[-1]
    return " ".join(line.strip() for line in reason.splitlines() if line.strip())[:MAX_MESSAGE]


def input_error(error: Exception) -> str | None:
    """The one-line reason of a model's complaint about its input (None for any other error)."""
    if isinstance(error, MlflowException) and error.error_code == "INVALID_PARAMETER_VALUE":
        return concise_error(error.message)
    return None


SERVED_MODEL_ENV = "GALAXYPROP_SERVED_MODEL"


def create_app():
    """MLflow's scoring server for the model at $GALAXYPROP_SERVED_MODEL (a models:/ URI), whose
    4xx answers carry the reason alone: MLflow's own bodies echo the whole payload (megabytes of
    cutouts) before it. `galaxyprop serve` runs it with uvicorn on 127.0.0.1."""
    import json
    import os

    from fastapi import Request
    from fastapi.responses import Response
    from mlflow.pyfunc import scoring_server

    app = scoring_server.init(mlflow.pyfunc.load_model(os.environ[SERVED_MODEL_ENV]))

    @app.middleware("http")
    async def concise_errors(request: Request, call_next):
        response = await call_next(request)
        if not 400 <= response.status_code < 500:
            return response
        body = b"".join([chunk async for chunk in response.body_iterator])
        try:
            payload = json.loads(body)
            payload["message"] = concise_error(payload["message"])
            payload.pop("stack_trace", None)
            body = json.dumps(payload).encode()
        except (ValueError, KeyError, TypeError):
            body = body[:MAX_MESSAGE]
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(body, status_code=response.status_code, headers=headers)

    return app
