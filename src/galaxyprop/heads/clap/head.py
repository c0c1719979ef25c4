"""The CLAP head (Lin et al. 2024, A&A 691 A331): calibrated probability densities for a scalar target.

Each realisation (its own seed) is a supervised contrastive projection, adaptive-k KNN densities
in its latent with local recalibration, and a network refitted to those densities; the head's
density is the harmonic mean of its realisations' densities, renormalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid, harmonic_mean, moments, resample
from galaxyprop.heads.base import Head, Prediction, check_features, check_fit_inputs, check_target
from galaxyprop.heads.clap.adaptive_knn import AdaptiveKNN
from galaxyprop.heads.clap.projection import ProjectionNet, fit_projection
from galaxyprop.heads.clap.refit import DensityNet, fit_density_net

MIN_BATCHES = 16          # fewest optimiser steps per epoch of the networks
PREDICT_BLOCK = 16384     # galaxies per block at prediction


@dataclass
class Realisation:
    projection: ProjectionNet
    knn: AdaptiveKNN
    density_net: DensityNet


class ClapHead(Head):
    name = "clap"
    gives_density = True
    common_names = MappingProxyType({"k_max": "neighbours"})     # its adaptive k's upper bound
    needs_grid = True
    trial_options = MappingProxyType({"realisations": 1})   # a tuning trial scores one realisation

    def __init__(self, *, grid: dict, latent_dim: int = 16, projection_width: int = 128, projection_layers: int = 2,
                 temperature: float = 0.1, positive_tolerance: float = 0.1, k_min: int = 8, k_max: int = 1024,
                 n_calibration: int = 200, recalibration_degree: int = 3, smoothing: float = 1.0,
                 refit_width: int = 256, refit_layers: int = 2, learning_rate: float = 2e-3,
                 weight_decay: float = 1e-4, batch_size: int = 512, max_epochs: int = 40, patience: int = 5,
                 n_realisations: int = 3, floor: float = 1e-3, seed: int = 0):
        """`grid`: the target's density grid {low, high, n_bins}; `positive_tolerance`: the largest
        target difference of a positive pair, in units of the training target's standard deviation."""
        self.grid = grid
        self.latent_dim = latent_dim
        self.projection_width = projection_width
        self.projection_layers = projection_layers
        self.temperature = temperature
        self.positive_tolerance = positive_tolerance
        self.k_min = k_min
        self.k_max = k_max
        self.n_calibration = n_calibration
        self.recalibration_degree = recalibration_degree
        self.smoothing = smoothing
        self.refit_width = refit_width
        self.refit_layers = refit_layers
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.n_realisations = n_realisations
        self.floor = floor
        self.seed = seed

    @property
    def density_grid(self) -> Grid:
        return Grid.from_params(self.grid)

    def fit(self, X: np.ndarray, y: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
            callbacks: Sequence = (), realisations: int | None = None) -> ClapHead:
        """Train the realisations; with `validation`, the networks early-stop on it (`callbacks` are not
        used: the networks of a realisation train one after the other, with no one loss per epoch).

        `realisations` (keyword-only option of this head): how many of the `n_realisations` to train
        now, all by default. A tuning trial trains one (`trial_options`); `finalise` grows the rest."""
        n = self.n_realisations if realisations is None else realisations
        if not 1 <= n <= self.n_realisations:
            raise GalaxypropError(f"clap: realisations must be from 1 to n_realisations ({self.n_realisations}), got {n}")
        self._start(X, y, validation)
        return self._grow(n)

    def finalise(self, X: np.ndarray, y: np.ndarray, *,
                 validation: tuple[np.ndarray, np.ndarray] | None = None) -> ClapHead:
        """Grow a tuning trial's ensemble to `n_realisations` (an unfitted head is fitted in full)."""
        if not hasattr(self, "realisations_"):
            return self.fit(X, y, validation=validation)
        return self._grow(self.n_realisations)

    def _start(self, X, y, validation) -> None:
        X, y = check_fit_inputs(X, y)
        if validation is not None:
            X_val = check_features(validation[0], X.shape[1])
            validation = (X_val, check_target(validation[1], len(X_val)))
        self.n_features_ = X.shape[1]
        self.target_mean_, self.target_scale_ = float(y.mean()), float(y.std()) or 1.0
        self._data = (X, y, validation)
        self.realisations_: list[Realisation] = []

    def _grow(self, n: int) -> ClapHead:
        while len(self.realisations_) < n:
            X, y, validation = self._data
            self.realisations_.append(self._realisation(X, y, validation, self.seed + len(self.realisations_)))
        if len(self.realisations_) >= self.n_realisations:
            self.__dict__.pop("_data", None)       # complete: the training data is not kept in the model
        return self

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_data"}

    def _realisation(self, X, y, validation, seed: int) -> Realisation:
        grid = self.density_grid
        scaled = (y - self.target_mean_) / self.target_scale_
        val_scaled = None if validation is None else (validation[0], (validation[1] - self.target_mean_)
                                                      / self.target_scale_)
        # At least MIN_BATCHES steps per epoch, so that a small training set still trains the networks.
        batch_size = int(min(self.batch_size, max(32, len(X) // MIN_BATCHES)))
        training = dict(learning_rate=self.learning_rate, weight_decay=self.weight_decay,
                        batch_size=batch_size, max_epochs=self.max_epochs, patience=self.patience, seed=seed)
        projection = fit_projection(X, scaled, val_scaled, latent_dim=self.latent_dim, width=self.projection_width,
                                    layers=self.projection_layers, tolerance=self.positive_tolerance,
                                    temperature=self.temperature, **training)
        latent = projection.transform(X)
        knn = AdaptiveKNN(latent, y, grid, self.k_min, self.k_max, self.n_calibration,
                          self.recalibration_degree, self.smoothing)
        targets = knn.densities(latent, exclude=np.arange(len(latent)))[0] * grid.width
        val_targets = None
        if validation is not None:
            val_latent = projection.transform(validation[0])
            val_targets = (val_latent, knn.densities(val_latent)[0] * grid.width)
        density_net = fit_density_net(latent, targets, val_targets, width=self.refit_width,
                                      layers=self.refit_layers, **training)
        return Realisation(projection, knn, density_net)

    def _combine(self, X: np.ndarray, grid: Grid | None, density) -> np.ndarray:
        """The harmonic mean of the realisations' densities, a block of galaxies at a time (memory
        stays bounded for a survey-size catalogue)."""
        X = check_features(X, self.n_features_)
        own = self.density_grid
        out = np.empty((len(X), (grid or own).n_bins))
        for start in range(0, len(X), PREDICT_BLOCK):
            block = X[start:start + PREDICT_BLOCK]
            pdfs = np.stack([density(r, r.projection.transform(block)) for r in self.realisations_])
            out[start:start + PREDICT_BLOCK] = resample(harmonic_mean(pdfs, own, self.floor), own, grid or own)
        return out

    def predict_pdf(self, X: np.ndarray, grid: Grid | None = None) -> np.ndarray:
        """The ensemble's densities from the refitted networks (no neighbour search)."""
        return self._combine(X, grid, lambda r, latent: r.density_net.probabilities(latent) / self.density_grid.width)

    def knn_pdf(self, X: np.ndarray, grid: Grid | None = None) -> np.ndarray:
        """The ensemble's densities from the calibrated KNN in each latent (what the networks learned)."""
        return self._combine(X, grid, lambda r, latent: r.knn.densities(latent)[0])

    def predict(self, X: np.ndarray) -> Prediction:
        """The mean and standard deviation of each galaxy's density."""
        return Prediction(*moments(self.predict_pdf(X), self.density_grid))

    def predict_with_pdf(self, X: np.ndarray, grid: Grid) -> tuple[Prediction, np.ndarray]:
        own = self.predict_pdf(X)
        return Prediction(*moments(own, self.density_grid)), resample(own, self.density_grid, grid)
