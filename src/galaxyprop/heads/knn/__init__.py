"""KNN head (AstroCLIP's zero-shot head): standardised features, (distance-)weighted neighbours, faiss."""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import faiss
import numpy as np

from galaxyprop.evaluation.densities import Grid, histogram_densities
from galaxyprop.features.scaling import make_scaler
from galaxyprop.heads.base import Head, Prediction, check_features, check_fit_inputs
from galaxyprop.resources import one_thread


class KNNHead(Head):
    name = "knn"
    gives_density = True
    common_names = MappingProxyType({"k": "neighbours"})

    def __init__(self, *, k: int = 64, weights: str = "distance", scaling: str = "standard"):
        self.k = k
        self.weights = weights
        self.scaling = scaling

    def fit(self, X: np.ndarray, y: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
            callbacks: Sequence = ()) -> KNNHead:
        """Index the standardised training features (`validation` and `callbacks` are not used)."""
        X, y = check_fit_inputs(X, y)
        if self.weights not in ("uniform", "distance"):
            raise ValueError(f"weights must be 'uniform' or 'distance', got {self.weights!r}")
        self.scaler_ = make_scaler(self.scaling).fit(X)
        self.train_features_ = np.ascontiguousarray(self.scaler_.transform(X), dtype=np.float32)
        self.train_target_ = y
        self._index = None
        return self

    @property
    def index(self) -> faiss.Index:
        # Exact L2 search; rebuilt after unpickling since faiss indexes do not pickle.
        if getattr(self, "_index", None) is None:
            self._index = faiss.IndexFlatL2(self.train_features_.shape[1])
            self._index.add(self.train_features_)
        return self._index

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_index"}

    def neighbours(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Euclidean distances and indices of the k nearest training galaxies (on one thread: faiss's exact
        search sums distances in an order that depends on its thread count, and ties then break differently)."""
        X = check_features(X, self.train_features_.shape[1])
        k = min(self.k, len(self.train_target_))
        with one_thread():
            squared, indices = self.index.search(np.ascontiguousarray(self.scaler_.transform(X), np.float32), k)
        return np.sqrt(np.maximum(squared, 0.0)), indices

    def neighbour_weights(self, distances: np.ndarray) -> np.ndarray:
        if self.weights == "uniform":
            return np.ones_like(distances)
        exact = distances <= 1e-12
        with np.errstate(divide="ignore"):
            weights = 1.0 / distances
        # As scikit-learn: a query that coincides with training points takes only those.
        return np.where(exact.any(axis=1, keepdims=True), exact.astype(float), weights)

    def predict(self, X: np.ndarray) -> Prediction:
        """The weighted mean and standard deviation of the neighbours' targets."""
        return self._summarise(*self.neighbours(X))

    def predict_pdf(self, X: np.ndarray, grid: Grid) -> np.ndarray:
        """The raw histogram of the neighbours' targets, weighted as for the point estimate."""
        return self.predict_with_pdf(X, grid)[1]

    def predict_with_pdf(self, X: np.ndarray, grid: Grid) -> tuple[Prediction, np.ndarray]:
        distances, indices = self.neighbours(X)
        pdf = histogram_densities(self.train_target_[indices], self.neighbour_weights(distances), grid)
        return self._summarise(distances, indices), pdf

    def _summarise(self, distances: np.ndarray, indices: np.ndarray) -> Prediction:
        weights = self.neighbour_weights(distances)
        targets = self.train_target_[indices]
        norm = weights.sum(axis=1)
        mean = (weights * targets).sum(axis=1) / norm
        variance = (weights * (targets - mean[:, None]) ** 2).sum(axis=1) / norm
        return Prediction(mean, np.sqrt(variance))
