"""One interface for every head: the constructor takes the hyperparameters (keyword-only), `fit` learns,
`predict` answers.

Every head's `fit` is `fit(X, y, *, validation=None, callbacks=())`: `validation` an `(X_val, y_val)`
pair (heads trained by epoch early-stop on it, others ignore it), `callbacks` Lightning callbacks
(e.g. Optuna's pruning) that heads trained by epoch hand to their trainer and others ignore. Inputs a
single head needs besides (the adversarial head's unlabelled galaxies) are keyword-only options after
these, named in that head's docstring.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
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
    #: Options of `fit` for a tuning trial: a cheaper model that `finalise` completes for the best trial
    #: (clap: one realisation of its ensemble); most heads fit a trial's model in full.
    trial_options: ClassVar[Mapping] = MappingProxyType({})
    #: The name a hyperparameter goes by among heads where it means what another head's of another name
    #: means (knn's `k` and clap's `k_max`: `neighbours`): the MLflow param runs of different heads share.
    #: Most names are shared as they are (learning_rate, width, dropout, weight_decay, max_epochs).
    common_names: ClassVar[Mapping[str, str]] = MappingProxyType({})

    @abstractmethod
    def fit(self, X: np.ndarray, y: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
            callbacks: Sequence = ()) -> Head:
        """Learn from features `X` (n, d) and target `y` (n,); `validation` (X_val, y_val) and the
        Lightning `callbacks` are used by heads that train by epoch (early stopping, pruning) and
        ignored by the others."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> Prediction:
        """Point estimate and spread for features `X`."""

    def predict_pdf(self, X: np.ndarray, grid: Grid) -> np.ndarray:
        """(n, grid.n_bins) probability densities of the target for features `X`."""
        raise GalaxypropError(f"head '{self.name}' gives no probability density")

    def predict_with_pdf(self, X: np.ndarray, grid: Grid) -> tuple[Prediction, np.ndarray]:
        """Point estimate, spread and densities together (heads override it to share the work)."""
        return self.predict(X), self.predict_pdf(X, grid)

    @property
    def density_ready(self) -> bool:
        """Whether `predict_pdf` answers now: a trial's model fitted with `trial_options` may leave its
        densities to `finalise` (gbt: its quantile models)."""
        return self.gives_density

    def finalise(self, X: np.ndarray, y: np.ndarray, *,
                 validation: tuple[np.ndarray, np.ndarray] | None = None) -> Head:
        """After tuning, complete the best trial's model fitted with `trial_options` (e.g. grow an
        ensemble that tuning scored one member of); most heads are complete already."""
        return self

    def get_params(self) -> dict:
        """The constructor's hyperparameters, as given (a constructor's `**kwargs` are its parent's)."""
        names: list[str] = []
        for cls in type(self).__mro__:
            if "__init__" not in vars(cls):
                continue
            parameters = inspect.signature(vars(cls)["__init__"]).parameters.values()
            names += [p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
            if not any(p.kind == p.VAR_KEYWORD for p in parameters):
                break
        return {n: getattr(self, n) for n in dict.fromkeys(names)}

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
