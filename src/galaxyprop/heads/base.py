"""One interface for every head: constructor takes hyperparameters, `fit` learns, `predict` answers."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from galaxyprop.data.io import load_object, save_object
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid


class Prediction(NamedTuple):
    """Point estimate and its 1-sigma spread for every galaxy."""

    value: np.ndarray
    spread: np.ndarray


class Head(ABC):
    name: ClassVar[str]
    trains_by_epoch: ClassVar[bool] = False   # has a validation loss per epoch (early stopping, pruning)
    gives_density: ClassVar[bool] = False     # implements `predict_pdf`
    needs_grid: ClassVar[bool] = False        # learns its densities on the target's grid (constructor `grid`)

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray) -> Head:
        """Learn from features `X` (n, d) and target `y` (n,)."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> Prediction:
        """Point estimate and spread for features `X`."""

    def predict_pdf(self, X: np.ndarray, grid: Grid) -> np.ndarray:
        """(n, grid.n_bins) probability densities of the target for features `X`."""
        raise GalaxypropError(f"head '{self.name}' gives no probability density")

    def predict_with_pdf(self, X: np.ndarray, grid: Grid) -> tuple[Prediction, np.ndarray]:
        """Point estimate, spread and densities together (heads override it to share the work)."""
        return self.predict(X), self.predict_pdf(X, grid)

    def finalise(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> Head:
        """After tuning, complete the best trial's model (e.g. grow an ensemble that tuning scored
        one member of); most heads are complete already."""
        return self

    def fit_tuned(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
                  callbacks: Sequence = ()) -> Head:
        """Fit for a tuning trial. Heads that train by epochs override it to early-stop on the
        validation split and to report to `callbacks` (Lightning's, e.g. Optuna's pruning)."""
        return self.fit(X, y)

    def get_params(self) -> dict:
        """The constructor's hyperparameters, as given."""
        names = inspect.signature(type(self).__init__).parameters
        return {n: getattr(self, n) for n in names if n != "self"}

    def save(self, path: str | Path) -> None:
        save_object(self, path)

    @staticmethod
    def load(path: str | Path) -> Head:
        return load_object(path, Head)


def check_fit_inputs(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = check_features(X)
    return X, check_target(y, len(X))


def check_target(y: np.ndarray, n_rows: int) -> np.ndarray:
    """The target as a float vector of `n_rows` finite values, or a clear error."""
    y = np.asarray(y, dtype=float).ravel()
    if len(y) != n_rows:
        raise GalaxypropError(f"inputs have {n_rows} rows but the target has {len(y)}")
    if not np.isfinite(y).all():
        raise GalaxypropError(f"target has {int((~np.isfinite(y)).sum())} non-finite values")
    return y


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
