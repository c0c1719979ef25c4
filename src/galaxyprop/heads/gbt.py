"""Gradient-boosted trees (scikit-learn HistGradientBoosting): what a user would pick instead.

The spread is half the 16-84 % interval of two quantile-loss models fitted beside the mean.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from galaxyprop.heads.base import Head, Prediction, check_features, check_fit_inputs

QUANTILES = (0.16, 0.84)


class GradientBoostingHead(Head):
    name = "gbt"

    def __init__(self, learning_rate: float = 0.1, max_iter: int = 300, max_leaf_nodes: int = 31,
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

    def fit(self, X: np.ndarray, y: np.ndarray) -> "GradientBoostingHead":
        X, y = check_fit_inputs(X, y)
        self.n_features_ = X.shape[1]
        self.mean_model_ = self._model().fit(X, y)
        self.quantile_models_ = [self._model(loss="quantile", quantile=q).fit(X, y) for q in QUANTILES]
        return self

    def predict(self, X: np.ndarray) -> Prediction:
        X = check_features(X, self.n_features_)
        low, high = (m.predict(X) for m in self.quantile_models_)
        return Prediction(self.mean_model_.predict(X), np.maximum(high - low, 0.0) / 2.0)
