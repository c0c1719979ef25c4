"""DESI-like spectra: the redshifted SED seen through a 1.5" fibre, on the DESI grid, with noise.

Each component (bulge, disk) enters with its own fibre-aperture fraction, from its size and
the fibre seeing, so spectra carry the colour gradient too. The noise is sky-dominated: a
smooth throughput-shaped floor, bright night-sky lines, and the source's own Poisson term.
"""

from __future__ import annotations

import functools

import numpy as np

from galaxyprop.data.astroclip import DESI_WAVE

FLUX_UNIT = 1e-17                                  # erg/s/cm^2/A
# Bright night-sky emission (Angstrom, air): [O I], Na D, OH Meinel bands.
SKY_LINES = np.array([5577.3, 5889.9, 5895.9, 6300.3, 6363.8, 6863.9, 7276.4, 7316.3, 7340.9, 7369.2,
                      7401.7, 7750.6, 7794.1, 7821.5, 7853.2, 7913.7, 7964.6, 7993.3, 8344.6, 8399.2,
                      8430.2, 8465.4, 8505.1, 8761.3, 8827.1, 8885.8, 8919.6, 8943.4, 8958.1, 8988.4,
                      9001.4, 9338.6, 9375.9, 9439.7, 9476.9, 9519.2, 9567.1, 9622.7, 9651.1, 9701.9,
                      9716.3, 9793.6])


def noise_shape(wave: np.ndarray = DESI_WAVE, line_strength: float = 4.0, line_width: float = 1.2) -> np.ndarray:
    """Relative per-pixel noise: rising at both ends of the spectrograph, spiking on sky lines."""
    blue = 1.0 + 2.0 * np.exp(-(wave - wave[0]) / 180.0)
    red = 1.0 + 1.5 * np.clip((wave - 8500.0) / 1300.0, 0.0, None) ** 2
    lines = line_strength * np.exp(-0.5 * ((wave[:, None] - SKY_LINES[None, :]) / line_width) ** 2).sum(axis=1)
    return blue * red * (1.0 + lines)


@functools.lru_cache(maxsize=4)
def fiber_fraction_table(fiber_diameter: float, moffat_beta: float):
    """Fraction of a round deV or exponential profile inside the fibre, on a (log hlr, seeing) grid.

    The grid stops at 4": larger galaxies (rare, and slow to draw) scale as 1 / hlr^2, the
    surface-brightness limit.
    """
    import galsim

    from galaxyprop.mock.imaging import DEV_TRUNCATION

    log_hlr = np.linspace(np.log10(0.03), np.log10(4.0), 26)
    seeing = np.linspace(0.6, 2.2, 9)
    scale, size = 0.04, int(np.ceil(fiber_diameter / 0.04)) + 4
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2.0) * scale
    inside = np.hypot(xx, yy) < fiber_diameter / 2.0
    tables = {}
    for name in ("bulge", "disk"):
        table = np.empty((len(log_hlr), len(seeing)))
        for i, hlr in enumerate(10.0 ** log_hlr):
            profile = (galsim.DeVaucouleurs(half_light_radius=hlr, trunc=DEV_TRUNCATION * hlr)
                       if name == "bulge" else galsim.Exponential(half_light_radius=hlr))
            for j, fwhm in enumerate(seeing):
                image = galsim.Convolve(profile, galsim.Moffat(beta=moffat_beta, fwhm=fwhm)).drawImage(
                    nx=size, ny=size, scale=scale)
                table[i, j] = image.array[inside].sum()
        tables[name] = table
    return log_hlr, seeing, tables


def fiber_fraction(component: str, half_light_radius: np.ndarray, seeing: np.ndarray,
                   fiber_diameter: float = 1.5, moffat_beta: float = 3.5) -> np.ndarray:
    """Bilinear interpolation in the fibre-fraction table (clipped to its range)."""
    from scipy.interpolate import RegularGridInterpolator

    log_hlr, seeing_grid, tables = fiber_fraction_table(float(fiber_diameter), float(moffat_beta))
    log_size = np.log10(half_light_radius)
    points = np.column_stack([np.clip(log_size, log_hlr[0], log_hlr[-1]),
                              np.clip(seeing, seeing_grid[0], seeing_grid[-1])])
    beyond = 10.0 ** (-2.0 * np.clip(log_size - log_hlr[-1], 0.0, None))
    return RegularGridInterpolator((log_hlr, seeing_grid), tables[component])(points) * beyond


def observed_spectrum(rest_wave: np.ndarray, rest_flux: np.ndarray, z: float) -> np.ndarray:
    """f_lambda on the DESI grid (1e-17 erg/s/cm^2/A) of a rest-frame SED in kcorrect units at z."""
    return np.interp(DESI_WAVE / (1.0 + z), rest_wave, rest_flux) / (1.0 + z) / FLUX_UNIT


def add_noise(flux: np.ndarray, sigma_floor: float, source_noise: float, rng: np.random.Generator,
              shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noisy flux and its inverse variance: sky floor x shape, plus source Poisson-like variance."""
    variance = (sigma_floor * shape) ** 2 + source_noise * np.clip(flux, 0.0, None)
    noisy = flux + rng.normal(0.0, 1.0, flux.shape) * np.sqrt(variance)
    return noisy.astype(np.float32), (1.0 / variance).astype(np.float32)
