"""MLflow model registry: register candidates with lineage tags, and the gated promotion."""

from __future__ import annotations

import getpass
import importlib.metadata
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import galaxyprop
from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError
from galaxyprop.metrics import is_better
from galaxyprop.predictor import Predictor
from galaxyprop.serving import PREDICTOR_ARTIFACT

CANDIDATE = "candidate"
PRODUCTION = "production"


def model_name(target: str) -> str:
    if target not in schema.TARGETS:
        raise GalaxypropError(f"unknown target '{target}'; choose from {sorted(schema.TARGETS)}")
    return f"galaxyprop-{target}"


def _requirements() -> list[str]:
    # Explicit requirements: MLflow's inference would reload the model in a subprocess.
    return [r.split(";")[0] for r in importlib.metadata.requires("galaxyprop") or [] if "extra ==" not in r]


def register_predictor(predictor: Predictor, input_example: pd.DataFrame | np.ndarray,
                       tags: Mapping[str, str], metrics: Mapping[str, float]) -> str:
    """Log `predictor` as a pyfunc in the active run, register it, alias it `candidate`; return the version.

    `input_example` is a few rows of what the model takes: catalogue rows (only the model's
    columns are kept) or an array of cutouts / embeddings; the signature is inferred from it.
    """
    name = model_name(predictor.target)
    if isinstance(input_example, pd.DataFrame):
        example = input_example[predictor.input_columns].reset_index(drop=True)
    else:
        example = np.ascontiguousarray(input_example, dtype=np.float32)
    signature = infer_signature(example, predictor.predict(example))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictor.joblib"
        predictor.save(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MLflow asks for predict() type hints
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
                artifacts={PREDICTOR_ARTIFACT: str(path)},
                signature=signature, input_example=example, pip_requirements=_requirements(),
                code_paths=[str(Path(galaxyprop.__file__).parent)], registered_model_name=name)
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in {**tags, **{f"test_{k}": f"{v:.6g}" for k, v in metrics.items()}}.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.set_registered_model_alias(name, CANDIDATE, version)
    return version


def resolve_version(target: str, ref: str | None = None):
    """The model version named by an alias (default `candidate`) or a version number."""
    name = model_name(target)
    client = MlflowClient()
    ref = ref or CANDIDATE
    try:
        if str(ref).isdigit():
            return client.get_model_version(name, str(ref))
        return client.get_model_version_by_alias(name, ref)
    except MlflowException:
        raise GalaxypropError(f"model '{name}' has no version or alias '{ref}'") from None


def alias_version(target: str, alias: str):
    try:
        return resolve_version(target, alias)
    except GalaxypropError:
        return None


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    version: str
    message: str


class PromotionRefused(GalaxypropError):
    """The candidate is worse than production on the promotion metric."""


def promote(target: str, version: str | None, score: Callable[[str], float], metric: str,
            force: bool = False, reason: str | None = None) -> PromotionResult:
    """Move `production` to the candidate if `score(model_uri)` on `metric` is no worse than production's.

    `score` recomputes the metric on the same test split for both versions. `force` needs a
    `reason`, which is recorded as a tag. The first promotion needs no comparison.
    """
    if force and not reason:
        raise GalaxypropError("--force needs --reason \"...\" saying why")
    name = model_name(target)
    candidate = str(resolve_version(target, version).version)
    current = alias_version(target, PRODUCTION)
    production = None if current is None else str(current.version)
    if production == candidate:
        return PromotionResult(False, candidate, f"{name} version {candidate} is already production")
    if production is None:
        note = "first promotion"
    else:
        cand_value = score(f"models:/{name}/{candidate}")
        prod_value = score(f"models:/{name}/{production}")
        comparison = (f"{metric} on the test split: candidate v{candidate} = {cand_value:.6g}, "
                      f"production v{production} = {prod_value:.6g}")
        if not is_better(metric, cand_value, prod_value) and not force:
            raise PromotionRefused(f"refused to promote {name}: candidate is worse ({comparison})")
        note = comparison
    client = MlflowClient()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    tags = {"promoted_at": now, "promoted_by": getpass.getuser(), "promotion_note": note,
            "previous_production": production or "none"}
    if force:
        tags["force_reason"] = reason
    for key, value in tags.items():
        client.set_model_version_tag(name, candidate, key, value)
    client.set_registered_model_alias(name, PRODUCTION, candidate)
    return PromotionResult(True, candidate, f"promoted {name} version {candidate} to production ({note})")


def load_model(target: str, ref: str | None = None):
    version = resolve_version(target, ref)
    return mlflow.pyfunc.load_model(f"models:/{model_name(target)}/{version.version}")
