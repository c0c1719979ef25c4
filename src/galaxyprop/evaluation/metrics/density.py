"""Metrics of probability densities against the truths (DESIGN.md; Pasquet et al. 2019, LSST RAIL):
PIT statistics, CRPS and interval coverage, plus the point metrics of each density's mean and mode."""

from __future__ import annotations

import numpy as np
from scipy import stats

from galaxyprop.evaluation.densities import Grid, cdf_at, cdf_at_edges

PIT_OUTLIER = 1e-4   # PIT below this or above 1 - this: the truth is in a tail the density calls impossible


def w1_to_uniform(counts: np.ndarray) -> np.ndarray:
    """1-Wasserstein distance between histograms `counts` (..., n_bins) on [0, 1] (uniform within
    bins) and the uniform distribution: the exact integral of |F(u) - u|."""
    counts = np.asarray(counts, float)
    n_bins = counts.shape[-1]
    total = counts.sum(axis=-1, keepdims=True)
    cdf = np.cumsum(counts, axis=-1) / np.where(total > 0, total, 1.0)
    gap = np.concatenate([np.zeros_like(cdf[..., :1]), cdf], axis=-1) - np.linspace(0, 1, n_bins + 1)
    a, b = np.abs(gap[..., :-1]), np.abs(gap[..., 1:])
    same_sign = gap[..., :-1] * gap[..., 1:] >= 0
    # F - u is linear within a bin: a trapezoid, or two triangles where it changes sign.
    crossing = (a**2 + b**2) / np.where(a + b > 0, 2 * (a + b), 1.0)
    return np.sum(np.where(same_sign, 0.5 * (a + b), crossing), axis=-1) / n_bins


def pit_histogram(pit: np.ndarray, n_bins: int = 20) -> np.ndarray:
    return np.histogram(np.clip(pit, 0, 1), bins=n_bins, range=(0, 1))[0]


def pit_metrics(pit: np.ndarray) -> dict[str, float]:
    """KS and CvM statistics of the PIT against uniform, its W1 to uniform (on 100 bins), the PIT
    outlier rate and the coverage of the central 68 % and 95 % intervals."""
    pit = np.clip(np.asarray(pit, float), 0.0, 1.0)
    return {
        "pit_ks": float(stats.kstest(pit, "uniform").statistic),
        "pit_cvm": float(stats.cramervonmises(pit, "uniform").statistic),
        "pit_w1": float(w1_to_uniform(pit_histogram(pit, 100))),
        "pit_outlier_rate": float(np.mean((pit < PIT_OUTLIER) | (pit > 1 - PIT_OUTLIER))),
        "coverage_68": float(np.mean(np.abs(pit - 0.5) <= 0.6827 / 2)),
        "coverage_95": float(np.mean(np.abs(pit - 0.5) <= 0.9545 / 2)),
    }


def crps(pdf: np.ndarray, grid: Grid, values: np.ndarray) -> np.ndarray:
    """Continuous ranked probability score of each density at its truth: the integral of
    (F(x) - [x >= y])^2, exact for the piecewise-linear CDF (and the mass-free tails off the grid)."""
    pdf = np.atleast_2d(pdf)
    values = np.asarray(values, float)
    cdf, h = cdf_at_edges(pdf, grid), grid.width

    def segment(a, b, length):   # integral of a linear function squared, from a to b over `length`
        return length * (a * a + a * b + b * b) / 3.0

    below = np.concatenate([np.zeros((len(pdf), 1)), np.cumsum(segment(cdf[:, :-1], cdf[:, 1:], h), axis=1)], 1)
    above = np.concatenate([np.zeros((len(pdf), 1)),
                            np.cumsum(segment(1 - cdf[:, :-1], 1 - cdf[:, 1:], h), axis=1)], 1)
    inside = np.clip(values, grid.low, grid.high)
    index = grid.bin_of(inside)
    rows = np.arange(len(pdf))
    start, f_start, f_end = grid.edges[index], cdf[rows, index], cdf[rows, index + 1]
    f_at = f_start + (f_end - f_start) * np.clip((inside - start) / h, 0, 1)
    left = below[rows, index] + segment(f_start, f_at, inside - start)
    right = (above[:, -1] - above[rows, index + 1]) + segment(1 - f_at, 1 - f_end, start + h - inside)
    tails = np.maximum(grid.low - values, 0.0) + np.maximum(values - grid.high, 0.0)
    return left + right + tails


def density_metrics(pdf: np.ndarray, grid: Grid, values: np.ndarray) -> dict[str, float]:
    """The contract's density metrics (`pit_*`, `crps`, `coverage_*`) of densities at the truths."""
    return {**pit_metrics(cdf_at(pdf, grid, values)), "crps": float(np.mean(crps(pdf, grid, values)))}

