"""Where a model has seen data: the neighbourhood scale of its training features and the range of its
training target, so that a served answer for a galaxy unlike any it was trained on is flagged, never
silently wrong (a z model fed z > 0.4 galaxies, trained on z < 0.37, puts every truth above its q98).

A galaxy is in support when every feature lies within the training set's 0.1-99.9 % range (`tail`), and
the distance to its k-th nearest training galaxy, in the features standardised per column (median and
interquartile range), is at most the `quantile` (99.5 %) of the training galaxies' own leave-one-out
k-th neighbour distances: the range catches a feature beyond anything trained on (the colours of
galaxies at redshifts the training set lacks), the neighbours a combination it never had. On SDSS
galaxies, a model trained below z = 0.1 flags ~91 % of those above z = 0.2 and ~2 % of held-out ones
below 0.1 (tests/test_support.py). `support_distance` is the larger of the neighbour distance over its
threshold and 1 + how far beyond the range (in the feature's sigmas): above 1, outside. The search is
scikit-learn's exact `NearestNeighbors` on at most `max_reference` training rows. Image tensors
(N, 3, H, W) and two-input models have no such feature matrix: `fit_support` returns None and the
model says it records no support.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The served columns (beside the quantiles) and what they are.
SUPPORT_COLUMNS = {
    "in_support": "whether the galaxy's features lie where the training galaxies' do (each within the training "
                  "0.1-99.9 % range, and its k-th neighbour distance within 99.5 % of the training set's own); "
                  "false: the answer extrapolates",
    "support_distance": "k-th neighbour distance to the training galaxies over the support threshold (> 1: outside)",
}


@dataclass
class Support:
    center: np.ndarray          # per feature: the training median
    scale: np.ndarray           # per feature: the training interquartile range / 1.349 (a sigma for a Gaussian)
    reference: np.ndarray       # standardised training rows searched (float32)
    low: np.ndarray             # per feature: the training set's `tail` and 1 - `tail` quantiles
    high: np.ndarray
    k: int
    threshold: float            # k-th neighbour distance below which `quantile` of the training rows lie
    quantile: float
    target_range: tuple[float, float]
    n_train: int
    #: the neighbour search over `reference`, built at the first `distance` (not pickled: rebuilt on load)
    _search: object = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_search": None}

    def _standardised(self, X: np.ndarray) -> np.ndarray:
        return ((np.asarray(X, np.float64) - self.center) / self.scale).astype(np.float32)

    def distance(self, X: np.ndarray) -> np.ndarray:
        """Each row's distance from the training support (above 1: outside; NaN features: infinitely far)."""
        from sklearn.neighbors import NearestNeighbors

        X = np.asarray(X, np.float64)
        Z = self._standardised(X)
        finite = np.isfinite(Z).all(axis=1)
        out = np.full(len(Z), np.inf)
        if finite.any():
            if self._search is None:        # fitted once per loaded model, not once per predicted chunk
                self._search = NearestNeighbors(n_neighbors=self.k).fit(self.reference)
            out[finite] = self._search.kneighbors(Z[finite])[0][:, -1] / self.threshold
            beyond = np.maximum(self.low - X[finite], X[finite] - self.high).clip(min=0.0) / self.scale
            excess = beyond.max(axis=1)
            out[finite] = np.where(excess > 0, np.maximum(out[finite], 1.0 + excess), out[finite])
        return out

    def describe(self) -> dict:
        """What the registered model's metadata says of its support."""
        return {"method": f"every feature within the training range, and the k-th ({self.k}) nearest training "
                          f"galaxy within the {self.quantile:.1%} point of the training set's own, in features "
                          "standardised by median and IQR",
                "n_train": self.n_train, "n_features": int(len(self.center)),
                "threshold": self.threshold, "target_range": [float(v) for v in self.target_range]}


def fit_support(X, y, k: int = 5, quantile: float = 0.995, tail: float = 0.001, max_reference: int = 5000,
                seed: int = 0) -> Support | None:
    """The support of training features `X` (rows x features) and targets `y`; None when `X` is not a
    feature matrix (image tensors, two-input models) or has fewer than 2k rows."""
    from sklearn.neighbors import NearestNeighbors

    if not isinstance(X, np.ndarray) or X.ndim != 2 or len(X) < 2 * k:
        return None
    X = np.asarray(X, np.float64)
    center = np.median(X, axis=0)
    q25, q75 = np.percentile(X, [25, 75], axis=0)
    spread = (q75 - q25) / 1.349
    scale = np.where(spread > 0, spread, np.maximum(np.std(X, axis=0), 1e-12))
    rows = np.random.default_rng(seed).choice(len(X), size=min(len(X), max_reference), replace=False)
    reference = ((X[np.sort(rows)] - center) / scale).astype(np.float32)
    # leave-one-out: each reference row's k-th neighbour among the others (its own distance 0 is first)
    own = NearestNeighbors(n_neighbors=k + 1).fit(reference).kneighbors(reference)[0][:, -1]
    threshold = float(np.quantile(own, quantile))
    y = np.asarray(y, float)
    low, high = np.quantile(X, [tail, 1.0 - tail], axis=0)
    return Support(center, scale, reference, low, high, k, max(threshold, 1e-12), quantile,
                   (float(np.nanmin(y)), float(np.nanmax(y))), len(X))
