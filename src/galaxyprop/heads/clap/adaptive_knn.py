"""CLAP steps 2-3: KNN densities in the latent with a per-object k, then local recalibration.

For every training galaxy and every k of the grid, the leave-one-out PIT of its own target under
the histogram of its k nearest neighbours is precomputed. A galaxy then takes the k whose PITs
over its `n_calibration` nearest training neighbours are closest to uniform (1-Wasserstein), and
its density is reweighted by a low-order polynomial fitted to that neighbourhood's PIT histogram,
taken at the density's own CDF: p'(y) = g(F(y)) p(y), so the neighbourhood's PITs become uniform.
"""

from __future__ import annotations

import faiss
import numpy as np
from numpy.polynomial import legendre

from galaxyprop.evaluation.densities import Grid, cdf_at, cdf_at_edges, histogram_densities, normalise
from galaxyprop.evaluation.metrics.density import w1_to_uniform
from galaxyprop.resources import one_thread

CHUNK = 2048       # query galaxies per block (bounds the memory of the neighbour lists)
G_FLOOR = 1e-3     # smallest reweighting: a recalibration never removes a bin's mass entirely


def log_k_grid(k_min: int, k_max: int, n_train: int) -> np.ndarray:
    """k = k_min, 2 k_min, 4 k_min ... up to k_max (and below the training set's size)."""
    top = min(k_max, n_train - 1)
    ks = [k for k in (k_min * 2 ** np.arange(32)) if k <= top]
    return np.array(ks or [max(1, top)], dtype=np.int64)


def pit_counts(pit: np.ndarray, n_bins: int) -> np.ndarray:
    """Histograms (..., n_bins) of PIT values (..., n) on [0, 1]."""
    bins = np.clip((pit * n_bins).astype(np.int64), 0, n_bins - 1)
    lead = int(np.prod(bins.shape[:-1]))
    flat = (np.arange(lead)[:, None] * n_bins + bins.reshape(lead, -1)).ravel()
    return np.bincount(flat, minlength=lead * n_bins).reshape(*bins.shape[:-1], n_bins)


def recalibrate(pdf: np.ndarray, grid: Grid, counts: np.ndarray, degree: int) -> np.ndarray:
    """Reweight each density by the polynomial g fitted (least squares, Legendre basis) to the
    density-normalised PIT histogram `counts` (n, n_pit_bins), taken at the density's CDF."""
    n_pit = counts.shape[-1]
    heights = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1) * n_pit
    basis = legendre.legvander(2 * (np.arange(n_pit) + 0.5) / n_pit - 1, degree)     # (n_pit, degree+1)
    coefficients = heights @ np.linalg.pinv(basis).T                                     # (n, degree+1)
    cdf = cdf_at_edges(pdf, grid)
    middle = 0.5 * (cdf[:, 1:] + cdf[:, :-1])                                            # F at bin centres
    g = np.einsum("nbd,nd->nb", legendre.legvander(2 * middle - 1, degree), coefficients)
    return normalise(pdf * np.maximum(g, G_FLOOR), grid)


class AdaptiveKNN:
    """The training latent and targets, their leave-one-out PITs per k, and the calibrated densities."""

    def __init__(self, latent: np.ndarray, y: np.ndarray, grid: Grid, k_min: int = 8, k_max: int = 1024,
                 n_calibration: int = 200, degree: int = 3, smoothing: float = 1.0, pit_bins: int = 20):
        self.latent = np.ascontiguousarray(latent, dtype=np.float32)
        self.y, self.grid = np.asarray(y, float), grid
        self.k_grid = log_k_grid(k_min, k_max, len(y))
        self.n_calibration = min(n_calibration, len(y) - 1)
        self.degree, self.smoothing, self.pit_bins = degree, smoothing, pit_bins
        self._index = None
        self.loo_pit = np.empty((len(y), len(self.k_grid)))
        for start in range(0, len(y), CHUNK):
            rows = np.arange(start, min(start + CHUNK, len(y)))
            neighbours = self.neighbours(self.latent[rows], int(self.k_grid[-1]), exclude=rows)
            for j, k in enumerate(self.k_grid):
                self.loo_pit[rows, j] = cdf_at(self._histograms(neighbours[:, :k]), grid, self.y[rows])

    @property
    def index(self) -> faiss.Index:
        if self._index is None:   # faiss indexes do not pickle: rebuilt on first use
            self._index = faiss.IndexFlatL2(self.latent.shape[1])
            self._index.add(self.latent)
        return self._index

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_index": None}

    def neighbours(self, query: np.ndarray, n: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """Indices of the `n` nearest training galaxies; `exclude[i]` (a training row) is left out of row i.
        On one thread, so that the neighbours do not depend on the run's thread count (resources.one_thread)."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        if exclude is None:
            with one_thread():
                return self.index.search(query, n)[1]
        with one_thread():
            found = self.index.search(query, n + 1)[1]
        drop = found == np.asarray(exclude)[:, None]
        drop[~drop.any(axis=1), -1] = True    # itself not among them (ties): drop the farthest
        return found[~drop].reshape(len(query), n)

    def _histograms(self, neighbours: np.ndarray) -> np.ndarray:
        return histogram_densities(self.y[neighbours], None, self.grid, self.smoothing)

    def densities(self, query: np.ndarray, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated densities of `query` latents and the k each took (`exclude`: see `neighbours`)."""
        pdfs, chosen = np.empty((len(query), self.grid.n_bins)), np.empty(len(query), np.int64)
        n_needed = int(max(self.k_grid[-1], self.n_calibration))
        for start in range(0, len(query), CHUNK):
            rows = slice(start, start + CHUNK)
            neighbours = self.neighbours(query[rows], n_needed, None if exclude is None else exclude[rows])
            # The PIT histogram of the calibration neighbourhood at every k: (m, n_k, pit_bins).
            counts = pit_counts(np.swapaxes(self.loo_pit[neighbours[:, :self.n_calibration]], 1, 2), self.pit_bins)
            best = np.argmin(w1_to_uniform(counts), axis=1)
            raw = np.empty((len(neighbours), self.grid.n_bins))
            for j, k in enumerate(self.k_grid):
                take = best == j
                if take.any():
                    raw[take] = self._histograms(neighbours[take, :k])
            pdfs[rows] = recalibrate(raw, self.grid, counts[np.arange(len(best)), best], self.degree)
            chosen[rows] = self.k_grid[best]
        return pdfs, chosen
