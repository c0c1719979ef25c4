"""Gradient-boosted trees (scikit-learn HistGradientBoosting): what a user would pick instead.

Beside the mean, quantile-loss models at the 2.3, 15.9, 50, 84.1 and 97.7 % levels give a density:
its CDF passes through those quantiles (probit-linear between them, Gaussian-like tails beyond), so
gbt is a density head like the others; the spread is half the 15.9-84.1 % interval. A tuning trial
scored on a point metric fits the mean model alone (`trial_options`; the quantile losses' leaf updates
cost ~5x the mean's fit); `finalise` fits the best trial's quantile models, the same ones a full fit
would have (each model's early-stopping split and seed are its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import numpy as np
from scipy.special import ndtr
from sklearn.ensemble import HistGradientBoostingRegressor

from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid, quantile_densities
from galaxyprop.heads.base import Head, Prediction, check_features, check_fit_inputs

QUANTILES = tuple(float(ndtr(t)) for t in (-2.0, -1.0, 0.0, 1.0, 2.0))


class GradientBoostingHead(Head):
    name = "gbt"
    gives_density = True
    trial_options = MappingProxyType({"quantiles": False})   # a trial's mean model alone (see the docstring)

    def __init__(self, *, learning_rate: float = 0.1, max_iter: int = 300, max_leaf_nodes: int = 31,
                 min_samples_leaf: int = 20, l2_regularization: float = 0.0, seed: int = 0):
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.seed = seed

    def _model(self, **loss) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            learning_rate=self.learning_rate, max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization, early_stopping=True,
            validation_fraction=0.1, n_iter_no_change=20, random_state=self.seed, **loss)

    def fit(self, X: np.ndarray, y: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
            callbacks: Sequence = (), quantiles: bool = True) -> GradientBoostingHead:
        """Fit the mean and (`quantiles`) the quantile models; each early-stops on its own 10 % of (X, y),
        so `validation` and `callbacks` are not used."""
        X, y = check_fit_inputs(X, y)
        self.n_features_ = X.shape[1]
        self.mean_model_ = _without_thread_count(self._model().fit(X, y))
        self.quantile_models_ = None
        return self.finalise(X, y) if quantiles else self

    @property
    def density_ready(self) -> bool:
        return getattr(self, "quantile_models_", None) is not None

    def finalise(self, X: np.ndarray, y: np.ndarray, *,
                 validation: tuple[np.ndarray, np.ndarray] | None = None) -> GradientBoostingHead:
        """The quantile models, where the fit left them out (a tuning trial)."""
        if not self.density_ready:
            X, y = check_fit_inputs(X, y)
            self.quantile_models_ = [_without_thread_count(self._model(loss="quantile", quantile=q).fit(X, y))
                                     for q in QUANTILES]
        return self

    def _quantiles(self, X: np.ndarray) -> np.ndarray:
        """(n, 5) predicted quantiles, sorted per row (the models are fitted apart and may cross)."""
        return np.sort(np.stack([m.predict(X) for m in self.quantile_models_], axis=1), axis=1)

    def predict(self, X: np.ndarray) -> Prediction:
        return self.predict_with_pdf(X, None)[0]

    def predict_pdf(self, X: np.ndarray, grid: Grid) -> np.ndarray:
        return self.predict_with_pdf(X, grid)[1]

    def predict_with_pdf(self, X: np.ndarray, grid: Grid | None) -> tuple[Prediction, np.ndarray | None]:
        X = check_features(X, self.n_features_)
        mean = self.mean_model_.predict(X)
        if not self.density_ready:                  # a tuning trial's model: the point estimate alone
            if grid is not None:
                raise GalaxypropError("this gbt model was fitted without its quantile models (a tuning trial): "
                                      "finalise it for densities")
            return Prediction(mean, np.full(len(mean), np.nan)), None
        levels = self._quantiles(X)
        prediction = Prediction(mean, (levels[:, 3] - levels[:, 1]) / 2.0)
        return prediction, None if grid is None else quantile_densities(levels, np.array(QUANTILES), grid)


def _without_thread_count(model: HistGradientBoostingRegressor) -> HistGradientBoostingRegressor:
    """The fitted model without the OpenMP thread count its fit ran with (scikit-learn keeps it in the bin
    mapper, which only the fit uses; predictions take the count at hand), so that the same fit pickles to
    the same bytes on any number of threads and a model file does not follow the machine's load."""
    model._bin_mapper.n_threads = None
    return model
