"""AB magnitudes and fluxes in nanomaggies (zero point 22.5)."""

from __future__ import annotations

import numpy as np

NANOMAGGIE_ZEROPOINT = 22.5
_POGSON = 2.5 / np.log(10.0)  # d(mag) / d(ln flux)


def flux_to_mag(flux: np.ndarray, zeropoint: float = NANOMAGGIE_ZEROPOINT) -> np.ndarray:
    """Magnitude of a flux in units whose zero point is `zeropoint` (NaN where flux <= 0)."""
    flux = np.asarray(flux, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, zeropoint - 2.5 * np.log10(flux), np.nan)


def mag_to_flux(mag: np.ndarray, zeropoint: float = NANOMAGGIE_ZEROPOINT) -> np.ndarray:
    """Flux (units with zero point `zeropoint`) of a magnitude."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - zeropoint))


def rescale_flux(flux: np.ndarray, zeropoint: float) -> np.ndarray:
    """Convert a flux in units of zero point `zeropoint` to nanomaggies."""
    return np.asarray(flux, dtype=float) * 10.0 ** (-0.4 * (zeropoint - NANOMAGGIE_ZEROPOINT))


def mag_err_to_flux_ivar(flux: np.ndarray, mag_err: np.ndarray) -> np.ndarray:
    """Inverse variance of a flux whose magnitude error is `mag_err` (first-order propagation)."""
    sigma = np.asarray(flux, dtype=float) * np.asarray(mag_err, dtype=float) / _POGSON
    with np.errstate(divide="ignore"):
        return np.where(sigma > 0, 1.0 / sigma**2, 0.0)


def flux_err_to_ivar(flux_err: np.ndarray) -> np.ndarray:
    err = np.asarray(flux_err, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(err) & (err > 0), 1.0 / err**2, 0.0)
