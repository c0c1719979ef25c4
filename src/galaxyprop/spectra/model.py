"""`SpectrumPredictor`: inputs -> features -> a head's latents, redshift and norm -> decoded spectra.

Independent of MLflow (registry code wraps it as a pyfunc). The head's targets are laid out as
`heads.spectrum_targets` (latents, z, log_norm). The per-pixel spread is the standard deviation of
the spectra decoded from the head's draws; the point spectrum decodes the head's mean.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from galaxyprop.data.astroclip import DESI_WAVE, N_SPECTRUM_PIXELS
from galaxyprop.errors import GalaxypropError
from galaxyprop.spectra.heads import SpectrumHead, split_targets
from galaxyprop.spectra.latent import SpectralLatent

DECODE_GALAXIES = 64      # galaxies decoded at a time (n_samples x 64 x 7781 floats in memory)


class FeatureTransform(Protocol):
    def transform(self, inputs: Any) -> np.ndarray:
        """The feature matrix (n, d) of the inputs."""


class SpectrumPredictor:
    """A feature transform (None: the inputs are the features), a fitted spectrum head and the fitted
    SpectralLatent whose latents the head predicts."""

    def __init__(self, features: FeatureTransform | None, head: SpectrumHead, latent: SpectralLatent):
        self.features = features
        self.head = head
        self.latent = latent

    def transform(self, inputs: Any) -> np.ndarray:
        return np.asarray(inputs if self.features is None else self.features.transform(inputs))

    def predict_latent(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """The head's mean and spread (n, k + 2) of (latents, z, log_norm) for the inputs."""
        return self.predict_from_features(self.transform(X))

    def calibrate_spread(self, features_val: np.ndarray, Y_val: np.ndarray) -> np.ndarray:
        """Scale each output's spread so that |truth - mean| <= spread holds for 68.3 % of the validation
        galaxies (a head's own spread, e.g. the neighbours' scatter, need not); the scales, also applied to
        the draws behind the per-pixel spread."""
        self.spread_scale = None
        mean, std = self.predict_from_features(features_val)
        ratio = np.abs(np.asarray(Y_val, float) - mean) / np.where(std > 0, std, np.inf)
        scale = np.quantile(ratio, 0.6827, axis=0)
        self.spread_scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        return self.spread_scale

    def _scale(self) -> np.ndarray | float:
        return getattr(self, "spread_scale", None) if getattr(self, "spread_scale", None) is not None else 1.0

    def predict_from_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """predict_latent on the feature matrix itself (the spread calibrated where it was)."""
        mean, std = self.head.predict(features)
        std = std * self._scale()
        if mean.shape[1] != self.latent.n_components + 2:
            raise GalaxypropError(f"the head gives {mean.shape[1]} outputs, the latent needs "
                                  f"{self.latent.n_components} + 2 (z, log_norm)")
        return mean, std

    def predict_spectra(self, X: Any, n_samples: int = 32, z: np.ndarray | None = None,
                        seed: int = 0) -> dict[str, np.ndarray]:
        """Decoded spectra on DESI_WAVE: `flux` (n, 7781) from the head's mean, `flux_std` the per-pixel
        standard deviation over `n_samples` decoded draws (NaN-aware: a pixel counts the draws that
        cover it; 0 with n_samples = 0), and the head's `latents`, `latents_std`, `z`, `z_std`,
        `log_norm`, `log_norm_std`. `z` given (e.g. the spectroscopic redshift) replaces the predicted
        redshift in every decoding."""
        features = self.transform(X)
        mean, std = self.predict_from_features(features)
        latents, z_pred, log_norm = split_targets(mean)
        latents_std, z_std, log_norm_std = split_targets(std)
        z_used = z_pred if z is None else np.broadcast_to(np.asarray(z, float), z_pred.shape)
        flux = self.latent.decode(latents, z_used, log_norm)
        flux_std = np.zeros((len(features), N_SPECTRUM_PIXELS), np.float32)
        if n_samples > 0:
            rng = np.random.default_rng(seed)
            for start in range(0, len(features), DECODE_GALAXIES):
                rows = slice(start, start + DECODE_GALAXIES)
                draws = self.head.sample(features[rows], n_samples, rng)          # (n_samples, g, m)
                draws = mean[rows] + (draws - mean[rows]) * self._scale()        # the calibrated spread
                s_latents, s_z, s_log_norm = split_targets(draws)
                if z is not None:
                    s_z = np.broadcast_to(z_used[rows], s_z.shape)
                decoded = self.latent.decode(s_latents.reshape(-1, s_latents.shape[-1]), s_z.ravel(),
                                             s_log_norm.ravel(), dtype=np.float64)
                decoded = decoded.reshape(n_samples, -1, N_SPECTRUM_PIXELS)
                covered = np.isfinite(decoded).sum(axis=0)
                with np.errstate(invalid="ignore"):
                    spread = np.nanstd(np.where(covered[None] > 0, decoded, 0.0), axis=0)
                flux_std[rows] = np.where(covered > 1, spread, np.where(covered == 1, 0.0, np.nan))
        return {"wave": DESI_WAVE, "flux": flux, "flux_std": flux_std, "latents": latents,
                "latents_std": latents_std, "z": z_used, "z_std": z_std, "log_norm": log_norm,
                "log_norm_std": log_norm_std}
