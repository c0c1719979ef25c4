"""K-corrections from an SED and two filter curves (Hogg et al. 2002; Blanton & Roweis 2007).

m_R = M_Q + DM(z) + K_QR(z), with
K_QR = -2.5 log10( maggies of the redshifted SED through R
                    / maggies of the rest-frame SED through Q blueshifted by (1 + band_shift) ),
the shifted-band maggies divided by (1 + band_shift) as kcorrect does.
"""

from __future__ import annotations

import numpy as np

from galaxyprop.physics.filters import Filter

_C_ANGSTROM_PER_S = 2.99792458e18
_AB_FNU = 3.631e-20  # erg/s/cm^2/Hz


def redshift_sed(wave: np.ndarray, flux_lambda: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Observed-frame wavelength and f_lambda of a rest-frame SED placed at redshift z.

    The luminosity-distance dimming is left out: it cancels in every K-correction.
    """
    return np.asarray(wave) * (1.0 + z), np.asarray(flux_lambda) / (1.0 + z)


def ab_maggies(wave: np.ndarray, flux_lambda: np.ndarray, band: Filter) -> np.ndarray:
    """AB maggies of f_lambda (erg/s/cm^2/A, 1-D or (n_sed, n_wave)) through a photon-counting band."""
    inside = (wave > band.wave[0]) & (wave < band.wave[-1])
    grid = np.unique(np.concatenate([band.wave, np.asarray(wave)[inside]]))
    response = np.interp(grid, band.wave, band.response, left=0.0, right=0.0)
    sed = np.stack([np.interp(grid, wave, f, left=0.0, right=0.0) for f in np.atleast_2d(flux_lambda)])
    numerator = np.trapezoid(sed * response * grid, grid, axis=-1)
    ab_flux_lambda = _AB_FNU * _C_ANGSTROM_PER_S / grid**2
    maggies = numerator / np.trapezoid(ab_flux_lambda * response * grid, grid)
    return maggies if np.ndim(flux_lambda) > 1 else maggies[0]


def shifted_band_maggies(wave: np.ndarray, flux_lambda: np.ndarray, band: Filter,
                         band_shift: float) -> np.ndarray:
    """Maggies of a rest-frame SED through `band` blueshifted by (1 + band_shift).

    As in kcorrect: the SED is redshifted by `band_shift`, projected through the band, and the
    result divided by (1 + band_shift), since the AB reference source is not shifted.
    """
    shifted_wave, shifted_flux = redshift_sed(wave, flux_lambda, band_shift)
    return ab_maggies(shifted_wave, shifted_flux, band) / (1.0 + band_shift)


def kcorrection(wave: np.ndarray, flux_lambda_rest: np.ndarray, z: float, observed: Filter,
                rest: Filter, band_shift: float = 0.0) -> np.ndarray:
    """K_QR(z) for rest-frame SED(s) `flux_lambda_rest`, observed band R and output band Q."""
    obs_wave, obs_flux = redshift_sed(wave, flux_lambda_rest, z)
    maggies_observed = ab_maggies(obs_wave, obs_flux, observed)
    maggies_rest = shifted_band_maggies(wave, flux_lambda_rest, rest, band_shift)
    return -2.5 * np.log10(maggies_observed / maggies_rest)
