"""One interface for every head: constructor takes hyperparameters, `fit` learns, `predict` answers."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from galaxyprop.data.io import load_object, save_object
from galaxyprop.errors import GalaxypropError


class Prediction(NamedTuple):
    """Point estimate and its 1-sigma spread for every galaxy."""

    value: np.ndarray
    spread: np.ndarray


class Head(ABC):
    name: ClassVar[str]

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray) -> "Head":
        """Learn from features `X` (n, d) and target `y` (n,)."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> Prediction:
        """Point estimate and spread for features `X`."""

    def get_params(self) -> dict:
        """The constructor's hyperparameters, as given."""
        names = inspect.signature(type(self).__init__).parameters
        return {n: getattr(self, n) for n in names if n != "self"}

    def save(self, path: str | Path) -> None:
        save_object(self, path)

    @staticmethod
    def load(path: str | Path) -> "Head":
        return load_object(path, Head)


def check_fit_inputs(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = check_features(X)
    y = np.asarray(y, dtype=float).ravel()
    if len(y) != len(X):
        raise GalaxypropError(f"features have {len(X)} rows but the target has {len(y)}")
    if not np.isfinite(y).all():
        raise GalaxypropError(f"target has {int((~np.isfinite(y)).sum())} non-finite values")
    return X, y


def check_features(X: np.ndarray, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise GalaxypropError(f"features must be a 2-D matrix, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise GalaxypropError(f"features have {X.shape[1]} columns, the head was fitted on {n_features}")
    if not np.isfinite(X).all():
        row = int(np.argwhere(~np.isfinite(X))[0, 0])
        raise GalaxypropError(f"features row {row} has non-finite values")
    return X
