"""K-corrections by fitting the kcorrect templates (Blanton & Roweis 2007) to broad-band fluxes."""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np

from galaxyprop.physics.filters import register_with_kcorrect

NANOMAGGIES_PER_MAGGY = 1e9


@dataclass(frozen=True)
class KcorrectResult:
    kcorrection: np.ndarray  # K_QR for every galaxy (NaN where the fit failed)
    spread: np.ndarray  # Monte-Carlo standard deviation over flux noise (NaN without MC)
    ok: np.ndarray  # the non-negative fit found a non-zero SED
    coeffs: np.ndarray  # template coefficients, (n_galaxy, n_template)


@functools.lru_cache(maxsize=8)
def kcorrect_model(responses: tuple[str, ...], response_out: str, response_map: str,
                   z_max: float = 1.0, nredshift: int = 500):
    """A kcorrect.Kcorrect object for these bands; built once per process (it projects every template)."""
    import kcorrect.kcorrect

    register_with_kcorrect((*responses, response_out, response_map))
    return kcorrect.kcorrect.Kcorrect(
        responses=list(responses), responses_out=[response_out], responses_map=[response_map],
        redshift_range=[0.0, z_max], nredshift=nredshift)


def fit_kcorrection(flux: np.ndarray, ivar: np.ndarray, redshift: np.ndarray,
                    responses: tuple[str, ...], response_out: str = "sdss_r0",
                    response_map: str = "sdss_r0", band_shift: float = 0.1,
                    n_mc: int = 0, seed: int = 0) -> KcorrectResult:
    """Fit templates to AB nanomaggies `flux` (n_galaxy, n_band) at `redshift`; K for Q=`response_out`
    shifted by `band_shift`, from the observed band `response_map`.

    Bands with ivar = 0 are ignored by the fit. With `n_mc` > 0 the fluxes are perturbed by their
    errors `n_mc` times and the K spread is the standard deviation over the refits.
    """
    redshift = np.asarray(redshift, dtype=np.float32)
    z_max = float(max(1.0, np.ceil(10 * (redshift.max() + 0.05)) / 10))
    model = kcorrect_model(tuple(responses), response_out, response_map, z_max)
    maggies = np.asarray(flux, dtype=float) / NANOMAGGIES_PER_MAGGY
    maggies_ivar = np.asarray(ivar, dtype=float) * NANOMAGGIES_PER_MAGGY**2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        state = np.random.get_state()  # noqa: NPY002 -- kcorrect draws its Monte-Carlo noise from numpy's global RNG
        np.random.seed(seed)  # noqa: NPY002
        try:
            fitted = model.fit_coeffs(redshift=redshift, maggies=maggies, ivar=maggies_ivar, mc=n_mc)
        finally:
            np.random.set_state(state)  # noqa: NPY002
        coeffs = fitted[0] if n_mc else fitted
        kcorr = model.kcorrect(redshift=redshift, coeffs=coeffs, band_shift=band_shift)[:, 0]
        spread = np.full(len(redshift), np.nan)
        if n_mc:
            mc = np.stack([model.kcorrect(redshift=redshift, coeffs=fitted[1][..., i],
                                          band_shift=band_shift)[:, 0] for i in range(n_mc)], axis=1)
            mc = np.where(fitted[1].sum(axis=1) > 0, mc, np.nan)
            spread = np.nanstd(mc, axis=1)
    ok = (coeffs.sum(axis=1) > 0) & np.isfinite(kcorr)
    return KcorrectResult(np.where(ok, kcorr, np.nan).astype(float), spread.astype(float), ok, coeffs)
