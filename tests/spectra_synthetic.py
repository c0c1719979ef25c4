"""Synthetic DESI spectra for the spectra family's tests, importable without torch (a fresh interpreter
fitting a latent, as in test_spectra_latent's reproducibility test, starts in under a second)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from galaxyprop.data.astroclip import DESI_WAVE
from galaxyprop.data.io import save_object
from galaxyprop.mock.spectroscopy import add_noise, noise_shape, observed_spectrum
from galaxyprop.physics.sed import load_templates
from galaxyprop.spectra.latent import SpectralLatent

N_REPRODUCIBLE = 300    # enough spectra that OpenBLAS's 2-thread products differ from its 1-thread ones


def synthetic_spectra(n: int, seed: int = 0, noise_sigma: float = 0.7):
    """Noisy and noiseless spectra (n, 7781) of random non-negative template mixtures at 0.02 < z < 0.35,
    scaled to a median flux of 1-10 (1e-17 erg/s/cm^2/A) at 6000-6500 A; with the mock's noise model."""
    templates = load_templates()
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 0.35, n)
    rest = rng.dirichlet(np.full(len(templates.flux), 0.7), n) @ templates.flux
    truth = np.stack([observed_spectrum(templates.wave, sed, redshift) for sed, redshift in zip(rest, z)])
    window = (DESI_WAVE > 6000) & (DESI_WAVE < 6500)
    truth *= (10.0 ** rng.uniform(0.0, 1.0, n) / np.median(truth[:, window], axis=1))[:, None]
    shape = noise_shape()
    noisy, ivar = map(np.array, zip(*(add_noise(f, noise_sigma, 0.02, rng, shape) for f in truth)))
    return noisy, ivar, truth.astype(np.float32), z


def fit_and_save(path: Path) -> SpectralLatent:
    """The latent of a fixed synthetic training set, saved as the spectra stage saves it."""
    flux, ivar, _, z = synthetic_spectra(N_REPRODUCIBLE, seed=3)
    latent = SpectralLatent(6).fit(flux, ivar, z)
    save_object(latent, path)
    return latent


if __name__ == "__main__":      # python spectra_synthetic.py PATH: fit and save, in a fresh interpreter
    import sys

    fit_and_save(Path(sys.argv[1]))
