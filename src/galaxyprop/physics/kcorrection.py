"""K-corrections from an SED and two filter curves (Hogg et al. 2002; Blanton & Roweis 2007).

m_R = M_Q + DM(z) + K_QR(z), with
K_QR = -2.5 log10( maggies of the redshifted SED through R
                    / maggies of the rest-frame SED through Q blueshifted by (1 + band_shift) ),
the shifted-band maggies divided by (1 + band_shift) as kcorrect does.
"""

from __future__ import annotations

import numpy as np

from galaxyprop.errors import GalaxypropError
from galaxyprop.physics.filters import Filter

_C_ANGSTROM_PER_S = 2.99792458e18
_AB_FNU = 3.631e-20  # erg/s/cm^2/Hz


def band_maggies(wave: np.ndarray, flux_lambda_rest: np.ndarray, z, band: Filter) -> np.ndarray:
    """AB maggies through `band` of rest-frame SED(s) placed at redshift(s) z (no distance dimming).

    `flux_lambda_rest` is (n_wave,) or (n_sed, n_wave) in erg/s/cm^2/A; z is a scalar or one per SED.
    The integral runs on the SED's own grid in the rest frame, and the AB reference is integrated
    on the same grid, so the SED must be sampled finely compared with the band (the kcorrect
    templates, R ~ 1000, are).
    """
    wave = np.asarray(wave, float)
    flux = np.atleast_2d(np.asarray(flux_lambda_rest, float))
    stretch = 1.0 + np.broadcast_to(np.asarray(z, float), (flux.shape[0],))[:, None]
    if wave[0] * stretch.max() > band.wave[0] or wave[-1] * stretch.min() < band.wave[-1]:
        raise GalaxypropError(f"SED grid {wave[0]:.0f}-{wave[-1]:.0f} A does not cover band {band.name} "
                              f"({band.wave[0]:.0f}-{band.wave[-1]:.0f} A) at z = {np.ravel(stretch - 1)[0]:.3f}")
    # Only the grid points that some SED sends into the band take part.
    lo = max(np.searchsorted(wave, band.wave[0] / stretch.max()) - 1, 0)
    hi = min(np.searchsorted(wave, band.wave[-1] / stretch.min()) + 1, len(wave))
    rest = wave[lo:hi]
    observed = stretch * rest                       # (n, n_grid) observed wavelengths
    response = np.interp(observed, band.wave, band.response, left=0.0, right=0.0)
    # f_obs(l) = f_rest(l / (1+z)) / (1+z); with l = (1+z) l' the photon-counting integral is
    # (1+z) * integral f_rest(l') R((1+z) l') l' dl'; the AB source integral becomes integral R / l dl.
    numerator = stretch[:, 0] * np.trapezoid(flux[:, lo:hi] * response * rest, rest, axis=-1)
    reference = _AB_FNU * _C_ANGSTROM_PER_S * np.trapezoid(response / observed * stretch, rest, axis=-1)
    maggies = numerator / reference
    return maggies if np.ndim(flux_lambda_rest) > 1 else maggies[0]


def ab_maggies(wave: np.ndarray, flux_lambda: np.ndarray, band: Filter) -> np.ndarray:
    """AB maggies of an observed-frame f_lambda (1-D or (n_sed, n_wave)) through a photon-counting band."""
    return band_maggies(wave, flux_lambda, 0.0, band)


def shifted_band_maggies(wave: np.ndarray, flux_lambda: np.ndarray, band: Filter,
                         band_shift: float) -> np.ndarray:
    """Maggies of a rest-frame SED through `band` blueshifted by (1 + band_shift).

    As in kcorrect: the SED is redshifted by `band_shift`, projected through the band, and the
    result divided by (1 + band_shift), since the AB reference source is not shifted.
    """
    return band_maggies(wave, flux_lambda, band_shift, band) / (1.0 + band_shift)


def kcorrection(wave: np.ndarray, flux_lambda_rest: np.ndarray, z, observed: Filter,
                rest: Filter, band_shift: float = 0.0) -> np.ndarray:
    """K_QR(z) for rest-frame SED(s) `flux_lambda_rest` (z scalar or one per SED), observed R, output Q."""
    maggies_observed = band_maggies(wave, flux_lambda_rest, z, observed)
    maggies_rest = shifted_band_maggies(wave, flux_lambda_rest, rest, band_shift)
    return -2.5 * np.log10(maggies_observed / maggies_rest)
