"""Distances in h = 1 units (flat Lambda-CDM, H0 = 100 h km/s/Mpc), as FastSpecFit's ABSMAG01 use."""

from __future__ import annotations

import functools

import numpy as np

ARCSEC_PER_RADIAN = 206264.806


@functools.lru_cache(maxsize=8)
def cosmology(omega_m: float = 0.3):
    """The astropy cosmology with H0 = 100 (distances in Mpc/h, magnitudes as M - 5 log10 h)."""
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=100.0, Om0=omega_m)


def distance_modulus(z: np.ndarray, omega_m: float = 0.3) -> np.ndarray:
    """DM(z) = 5 log10(D_L / 10 pc) with D_L in Mpc/h."""
    return np.asarray(cosmology(omega_m).distmod(np.asarray(z, float)).value)


def angular_diameter_distance(z: np.ndarray, omega_m: float = 0.3) -> np.ndarray:
    """D_A(z) in Mpc/h."""
    return np.asarray(cosmology(omega_m).angular_diameter_distance(np.asarray(z, float)).value)


def angular_size_arcsec(size_kpc: np.ndarray, z: np.ndarray, omega_m: float = 0.3) -> np.ndarray:
    """Angle subtended by a physical size (kpc/h) at redshift z."""
    return np.asarray(size_kpc) / (1e3 * angular_diameter_distance(z, omega_m)) * ARCSEC_PER_RADIAN


def comoving_volume_element(z: np.ndarray, omega_m: float = 0.3) -> np.ndarray:
    """dV/dz/dOmega in (Mpc/h)^3 per steradian."""
    return np.asarray(cosmology(omega_m).differential_comoving_volume(np.asarray(z, float)).value)
