"""The MLflow pyfunc flavour of a galaxyprop predictor: what the registry stores and serves."""

from __future__ import annotations

import json

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
#: The request limits `galaxyprop serve --max-rows / --max-body-mb` sets for the server it starts.
MAX_ROWS_ENV, MAX_BODY_ENV = "GALAXYPROP_SERVE_MAX_ROWS", "GALAXYPROP_SERVE_MAX_BODY_MB"
#: Defaults: about 0.2 GB of server memory per request for the catalogue models' densities (a request of
#: 10^6 rows, unbounded, took 19.7 GB), and the body of ~1,000 64-pixel g,r,z cutouts as JSON.
DEFAULT_MAX_ROWS, DEFAULT_MAX_BODY_MB = 10_000, 256
#: The media types MLflow's scoring server reads.
ACCEPTED_TYPES = ("application/json", "text/csv")


def request_rows(body: bytes, media_type: str) -> int:
    """The rows (galaxies) of an /invocations request in any of MLflow's input formats: a CSV's lines
    after the header, `dataframe_split.data`, `dataframe_records`, or `instances` / `inputs` (a list,
    or named tensors, whose longest first axis counts). Raises ValueError for a body that is not
    valid JSON, RecursionError for JSON nested past Python's recursion limit."""
    if media_type == "text/csv":
        return max(body.strip().count(b"\n"), 0)
    payload = json.loads(body)
    if not isinstance(payload, dict):
        return 0                                   # MLflow answers a bare list with 400 itself
    if isinstance(payload.get("dataframe_split"), dict):
        return len(payload["dataframe_split"].get("data") or [])
    data = next((payload[key] for key in ("dataframe_records", "instances", "inputs") if key in payload), None)
    if isinstance(data, dict):
        return max((len(v) for v in data.values() if isinstance(v, list)), default=0)
    return len(data) if isinstance(data, list) else 0


class RequestLimits:
    """ASGI middleware in front of the scoring server's /invocations: one request may hold at most
    `max_bytes` of body and `max_rows` galaxies (HTTP 413, before the model sees it, so that the server's
    memory stays bounded: MLflow's own timeout answers 504 but lets the work run on); a request without a
    media type MLflow reads is 415, a body that is not JSON or is nested too deeply 400, each with a
    one-line JSON reason instead of MLflow's 500. Written here because MLflow's scoring server and
    uvicorn have no body or row limit."""

    def __init__(self, app, max_rows: int, max_bytes: int):
        self.app, self.max_rows, self.max_bytes = app, max_rows, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/invocations":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in ACCEPTED_TYPES:
            given = f"Content-Type {media_type!r}" if media_type else "no Content-Type"
            return await _answer(send, 415, f"{given}: send application/json or text/csv")
        chunks, size, more = [], 0, True
        while more:   # a body over the limit is read to its end and dropped, so that the client hears the 413
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
            if size <= self.max_bytes:
                chunks.append(message.get("body", b""))
        if size > self.max_bytes:
            return await _answer(send, 413, self._too_large(size))
        body = b"".join(chunks)
        try:
            rows = request_rows(body, media_type)
        except RecursionError:
            return await _answer(send, 400, "the JSON body is nested too deeply")
        except ValueError as err:
            return await _answer(send, 400, f"the body is not valid JSON ({err})")
        if rows > self.max_rows:
            return await _answer(send, 413, f"{rows} rows in one request; this server takes at most {self.max_rows}: "
                                            f"send smaller batches (or serve with a larger --max-rows)")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    def _too_large(self, size: int) -> str:
        return (f"a body of {size / 2**20:.3g} MB; this server takes at most "
                f"{self.max_bytes / 2**20:.3g} MB: send smaller batches (or serve with a larger --max-body-mb)")


async def _answer(send, status: int, message: str) -> None:
    body = json.dumps({"error_code": "BAD_REQUEST", "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app():
    """MLflow's scoring server for the model at $GALAXYPROP_SERVED_MODEL (a models:/ URI), whose
    4xx answers carry the reason alone: MLflow's own bodies echo the whole payload (megabytes of
    cutouts) before it, behind `RequestLimits` ($GALAXYPROP_SERVE_MAX_ROWS rows, $GALAXYPROP_SERVE_MAX_BODY_MB
    MB). `galaxyprop serve` runs it with uvicorn on 127.0.0.1."""
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

    max_rows = int(os.environ.get(MAX_ROWS_ENV) or DEFAULT_MAX_ROWS)
    max_megabytes = float(os.environ.get(MAX_BODY_ENV) or DEFAULT_MAX_BODY_MB)
    print(f"each request: at most {max_rows} rows and {max_megabytes:g} MB (--max-rows, --max-body-mb)", flush=True)
    return RequestLimits(app, max_rows=max_rows, max_bytes=int(max_megabytes * 2**20))
