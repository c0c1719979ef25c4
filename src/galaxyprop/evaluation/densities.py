"""Probability densities of a scalar target on a fixed grid of equal bins: pure numpy.

A density is an (n, n_bins) array of values per unit target, constant within each bin, so that
its CDF is piecewise linear between the bin edges. Every head with densities and every density
metric goes through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.special import ndtr, ndtri

from galaxyprop.errors import GalaxypropError


@dataclass(frozen=True)
class Grid:
    """`n_bins` equal bins from `low` to `high` (the target's grid in params: `targets.<t>.grid`)."""

    low: float
    high: float
    n_bins: int

    def __post_init__(self):
        if not (np.isfinite(self.low) and np.isfinite(self.high) and self.high > self.low and self.n_bins >= 2):
            raise GalaxypropError(f"a density grid needs low < high and n_bins >= 2, got {self}")

    @classmethod
    def from_params(cls, params: Mapping) -> Grid:
        missing = {"low", "high", "n_bins"} - set(params)
        if missing:
            raise GalaxypropError(f"density grid needs {sorted(missing)}, got {dict(params)}")
        return cls(float(params["low"]), float(params["high"]), int(params["n_bins"]))

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.n_bins + 1)

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def width(self) -> float:
        return (self.high - self.low) / self.n_bins

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """The bin of each value; values off the grid go to the first or last bin."""
        index = np.floor((np.asarray(values, float) - self.low) / self.width).astype(np.int64)
        return np.clip(index, 0, self.n_bins - 1)


def normalise(pdf: np.ndarray, grid: Grid) -> np.ndarray:
    """Densities that integrate to one over the grid (a row with no mass becomes uniform)."""
    pdf = np.clip(np.asarray(pdf, float), 0.0, None)
    mass = pdf.sum(axis=-1, keepdims=True) * grid.width
    uniform = np.full_like(pdf, 1.0 / (grid.high - grid.low))
    return np.where(mass > 0, pdf / np.where(mass > 0, mass, 1.0), uniform)


def cdf_at_edges(pdf: np.ndarray, grid: Grid) -> np.ndarray:
    """(n, n_bins + 1) CDF at the bin edges, from 0 to 1."""
    cumulative = np.cumsum(pdf * grid.width, axis=-1)
    return np.concatenate([np.zeros_like(cumulative[..., :1]), cumulative], axis=-1)


def cdf_at(pdf: np.ndarray, grid: Grid, values: np.ndarray) -> np.ndarray:
    """Each density's CDF at its own value (the PIT when `values` are the truths)."""
    pdf = np.atleast_2d(pdf)
    values = np.asarray(values, float)
    cdf = cdf_at_edges(pdf, grid)
    index = grid.bin_of(values)
    rows = np.arange(len(pdf))
    fraction = np.clip((values - grid.edges[index]) / grid.width, 0.0, 1.0)
    inside = cdf[rows, index] + fraction * (cdf[rows, index + 1] - cdf[rows, index])
    return np.where(values < grid.low, 0.0, np.where(values >= grid.high, 1.0, inside))


def probit_cdf_at_edges(pdf: np.ndarray, grid: Grid) -> np.ndarray:
    """(n, n_bins + 1) probit of the CDF at the bin edges, Phi^-1(F), from -inf to +inf. The upper half
    comes from the survival function so that both tails keep their precision (1 - F underflows)."""
    mass = np.atleast_2d(pdf) * grid.width
    below = np.concatenate([np.zeros_like(mass[:, :1]), np.cumsum(mass, axis=-1)], axis=-1)
    above = np.concatenate([np.cumsum(mass[:, ::-1], axis=-1)[:, ::-1], np.zeros_like(mass[:, :1])], axis=-1)
    with np.errstate(divide="ignore"):
        return np.where(below <= above, ndtri(np.clip(below, 0.0, 1.0)), -ndtri(np.clip(above, 0.0, 1.0)))


def probit_pit(pdf: np.ndarray, grid: Grid, values: np.ndarray) -> np.ndarray:
    """Phi^-1 of each density's CDF at its own value (the probit of the PIT), precise in both tails;
    -inf / +inf below / above the density's support."""
    mass = np.atleast_2d(pdf) * grid.width
    values = np.asarray(values, float)
    index = grid.bin_of(values)
    rows = np.arange(len(mass))
    fraction = np.clip((values - grid.edges[index]) / grid.width, 0.0, 1.0)
    cumulative = np.cumsum(mass, axis=-1)
    below = cumulative[rows, index] - (1.0 - fraction) * mass[rows, index]
    above = (cumulative[:, -1] - cumulative[rows, index]) + (1.0 - fraction) * mass[rows, index]
    below = np.where(values < grid.low, 0.0, np.where(values >= grid.high, 1.0, below))
    above = np.where(values < grid.low, 1.0, np.where(values >= grid.high, 0.0, above))
    with np.errstate(divide="ignore"):
        return np.where(below <= above, ndtri(np.clip(below, 0.0, 1.0)), -ndtri(np.clip(above, 0.0, 1.0)))


def from_probit_cdf(probit_edges: np.ndarray, grid: Grid) -> np.ndarray:
    """Densities from the probit of their CDF at the bin edges (the inverse of `probit_cdf_at_edges`)."""
    low, high = ndtr(probit_edges), ndtr(-probit_edges)
    # Each bin's mass from whichever side is more precise: F differences below the median, S above.
    mass = np.where(low[:, 1:] <= 0.5, np.diff(low, axis=-1), -np.diff(high, axis=-1))
    return normalise(np.maximum(mass, 0.0) / grid.width, grid)


def quantile_densities(values: np.ndarray, levels: np.ndarray, grid: Grid) -> np.ndarray:
    """Densities through given quantiles: `values` (n, m) at probability `levels` (m,). The probit of the
    CDF is interpolated linearly in the target between the quantiles and extrapolated beyond them
    with the outer slopes, so a Gaussian's quantiles give back that Gaussian. Crossing quantiles are
    sorted first (monotone rearrangement)."""
    levels = np.asarray(levels, float)
    if levels.ndim != 1 or len(levels) < 2 or np.any(np.diff(levels) <= 0) or levels[0] <= 0 or levels[-1] >= 1:
        raise GalaxypropError(f"quantile levels must increase strictly inside (0, 1), got {levels}")
    knots = np.sort(np.atleast_2d(np.asarray(values, float)), axis=-1)
    knots = knots + 1e-6 * grid.width * np.arange(knots.shape[1])   # ties: a tiny step keeps the CDF increasing
    probits = ndtri(levels)
    edges = grid.edges
    slope_low = (probits[1] - probits[0]) / (knots[:, 1] - knots[:, 0])
    slope_high = (probits[-1] - probits[-2]) / (knots[:, -1] - knots[:, -2])
    out = np.empty((len(knots), len(edges)))
    for row, (x, a, b) in enumerate(zip(knots, slope_low, slope_high, strict=True)):
        inside = np.interp(edges, x, probits)
        out[row] = np.where(edges < x[0], probits[0] + a * (edges - x[0]),
                            np.where(edges > x[-1], probits[-1] + b * (edges - x[-1]), inside))
    return from_probit_cdf(out, grid)


def histogram_densities(values: np.ndarray, weights: np.ndarray | None, grid: Grid,
                        smoothing: float = 0.0) -> np.ndarray:
    """Weighted histograms of each row of `values` (n, k) on the grid, smoothed by a Gaussian kernel
    of `smoothing` bins (0: the raw histogram), as densities."""
    values = np.atleast_2d(values)
    weights = np.ones_like(values, dtype=float) if weights is None else np.broadcast_to(weights, values.shape)
    flat = (np.arange(len(values))[:, None] * grid.n_bins + grid.bin_of(values)).ravel()
    counts = np.bincount(flat, weights=np.asarray(weights, float).ravel(),
                         minlength=len(values) * grid.n_bins).reshape(len(values), grid.n_bins)
    if smoothing > 0:
        counts = gaussian_filter1d(counts, smoothing, axis=-1, mode="constant")
    return normalise(counts, grid)


def gaussian_densities(mean: np.ndarray, sigma: np.ndarray, grid: Grid) -> np.ndarray:
    """N(mean, sigma) integrated over each bin (exact however narrow sigma is), as densities."""
    mean, sigma = np.asarray(mean, float)[:, None], np.asarray(sigma, float)[:, None]
    sigma = np.maximum(sigma, 1e-3 * grid.width)
    cdf = ndtr((grid.edges[None, :] - mean) / sigma)
    return normalise(np.diff(cdf, axis=-1) / grid.width, grid)


def harmonic_mean(pdfs: np.ndarray, grid: Grid, floor: float = 1e-3) -> np.ndarray:
    """The ensemble density p = n / sum_i 1/p_i over the first axis (the realisations), renormalised;
    each p_i is floored at `floor` x the uniform density so that no zero decides alone."""
    pdfs = np.asarray(pdfs, float)
    floored = np.maximum(pdfs, floor / (grid.high - grid.low))
    return normalise(len(pdfs) / np.sum(1.0 / floored, axis=0), grid)


def moments(pdf: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each density (uniform within bins)."""
    mass = pdf * grid.width
    mean = mass @ grid.centres
    variance = mass @ grid.centres**2 - mean**2 + grid.width**2 / 12.0
    return mean, np.sqrt(np.maximum(variance, 0.0))


def quantiles(pdf: np.ndarray, grid: Grid, probabilities: np.ndarray) -> np.ndarray:
    """(n, len(probabilities)) values where each density's piecewise-linear CDF reaches each probability."""
    cdf = cdf_at_edges(np.atleast_2d(pdf), grid)
    out = np.empty((len(cdf), len(probabilities)))
    rows = np.arange(len(cdf))
    for j, p in enumerate(probabilities):
        index = np.clip((cdf < p).sum(axis=-1) - 1, 0, grid.n_bins - 1)
        below, above = cdf[rows, index], cdf[rows, index + 1]
        rise = np.where(above > below, above - below, 1.0)
        out[:, j] = grid.edges[index] + np.clip((p - below) / rise, 0.0, 1.0) * grid.width
    return out


def mode(pdf: np.ndarray, grid: Grid) -> np.ndarray:
    return grid.centres[np.argmax(pdf, axis=-1)]


def resample(pdf: np.ndarray, grid: Grid, onto: Grid) -> np.ndarray:
    """Densities on another grid, through their piecewise-linear CDF."""
    if onto == grid:
        return pdf
    edges = np.clip(onto.edges, grid.low, grid.high)
    cdf = np.stack([np.interp(edges, grid.edges, row) for row in cdf_at_edges(pdf, grid)])
    return normalise(np.diff(cdf, axis=-1) / onto.width, onto)


def to_qp(pdf: np.ndarray, grid: Grid, ancil: Mapping[str, np.ndarray] | None = None):
    """The densities as a `qp.Ensemble`, the LSST DESC exchange format (what RAIL reads and writes): qp's
    histogram parameterisation on the grid's bin edges, one distribution per row, with `ancil` (ids,
    point estimates, ...) as its ancillary data."""
    import qp

    ensemble = qp.Ensemble(qp.hist, data={"bins": grid.edges, "pdfs": np.asarray(pdf, dtype=float)})
    if ancil:       # text columns as fixed-width strings: qp's HDF5 writer drops object arrays
        ensemble.set_ancil({name: (np.asarray(values).astype(str) if np.asarray(values).dtype == object
                                   else np.asarray(values)) for name, values in ancil.items()})
    return ensemble


def from_qp(ensemble, grid: Grid) -> np.ndarray:
    """Any `qp.Ensemble`'s densities on `grid` (of any parameterisation: histogram, interpolated,
    quantiles, mixture): each bin's probability from the ensemble's CDF at the bin edges, per unit target."""
    cdf = np.asarray(ensemble.cdf(grid.edges), dtype=float).reshape(ensemble.npdf, -1)
    return normalise(np.clip(np.diff(cdf, axis=1), 0.0, None) / grid.width, grid)
