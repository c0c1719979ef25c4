"""k-corrections: the closed-form identity, and agreement with the kcorrect package."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

from galaxyprop.physics import magnitudes
from galaxyprop.physics.filters import load_filter
from galaxyprop.physics.kcorrect_fit import fit_kcorrection
from galaxyprop.physics.kcorrection import ab_maggies, kcorrection

IDENTITY = -2.5 * np.log10(1.1)  # K_{0.1r, r}(z = 0.1) for every SED


def templates() -> tuple[np.ndarray, np.ndarray]:
    import kcorrect

    path = os.path.join(os.path.dirname(kcorrect.__file__), "data", "templates", "kcorrect-default-v4.fits")
    row = fits.getdata(path, "FLUX")[0]
    wave = np.asarray(row["wave"], float)
    return wave, np.asarray(row["flux"], float).reshape(-1, len(wave))


def test_identity_holds_for_any_sed():
    r = load_filter("sdss_r0")
    wave = np.linspace(1000, 20000, 4000)
    seds = [wave**-2.0, np.ones_like(wave), np.exp(-(((wave - 5000) / 1500) ** 2)) + 0.05, wave**1.5]
    for sed in seds:
        assert kcorrection(wave, sed, 0.1, r, r, band_shift=0.1) == pytest.approx(IDENTITY, abs=1e-10)
    template_wave, template_flux = templates()
    np.testing.assert_allclose(kcorrection(template_wave, template_flux, 0.1, r, r, 0.1), IDENTITY, atol=1e-10)


def test_kcorrection_is_zero_without_redshift_or_shift():
    g = load_filter("sdss_g0")
    wave, flux = templates()
    np.testing.assert_allclose(kcorrection(wave, flux, 0.0, g, g, 0.0), 0.0, atol=1e-12)


def test_ab_source_has_unit_maggies():
    wave = np.linspace(2000, 12000, 20000)
    ab = 3.631e-20 * 2.99792458e18 / wave**2
    for band in ("sdss_u0", "sdss_r0", "decam_z", "bass_g"):
        assert ab_maggies(wave, ab, load_filter(band)) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.slow
def test_agrees_with_kcorrect_for_its_templates():
    """Our K of each template matches kcorrect's K for unit coefficients on that template."""
    import kcorrect.kcorrect

    wave, flux = templates()
    kc = kcorrect.kcorrect.Kcorrect(responses=["sdss_g0", "sdss_r0", "sdss_i0"], responses_out=["sdss_r0"],
                                    responses_map=["sdss_g0"], redshift_range=[0, 0.6], nredshift=601)
    g, r = load_filter("sdss_g0"), load_filter("sdss_r0")
    for z in (0.05, 0.2, 0.35):
        ours = kcorrection(wave, flux, z, g, r, band_shift=0.1)
        theirs = [kc.kcorrect(redshift=z, coeffs=np.eye(len(flux))[i], band_shift=0.1)[0] for i in range(len(flux))]
        np.testing.assert_allclose(ours, theirs, atol=3e-3)


@pytest.mark.slow
def test_kcorrect_fit_reproduces_identity_and_real_galaxies():
    from conftest import gst_path

    data = fits.getdata(gst_path())[:300]
    flux = np.asarray(data["MODELFLUX"], float)
    ivar = np.asarray(data["MODELFLUX_IVAR"], float)
    bands = ("sdss_u0", "sdss_g0", "sdss_r0", "sdss_i0", "sdss_z0")
    at_01 = fit_kcorrection(flux, ivar, np.full(len(flux), 0.1), bands, band_shift=0.1)
    np.testing.assert_allclose(at_01.kcorrection[at_01.ok], IDENTITY, atol=2e-4)
    result = fit_kcorrection(flux, ivar, data["Z"], bands, band_shift=0.1, n_mc=5, seed=1)
    assert result.ok.mean() > 0.97
    k = result.kcorrection[result.ok]
    # Low-z galaxies: K(^{0.1}r) from r near -0.1035 with the known colour spread.
    assert -0.35 < np.median(k) < 0.1 and np.std(k) < 0.2
    assert np.all(result.spread[result.ok] >= 0) and np.median(result.spread[result.ok]) < 0.05


def test_magnitude_round_trips():
    flux = np.array([1.0, 100.0, 3631e9 / 1e9])
    np.testing.assert_allclose(magnitudes.mag_to_flux(magnitudes.flux_to_mag(flux)), flux)
    assert magnitudes.flux_to_mag(np.array([1.0]))[0] == 22.5
    assert np.isnan(magnitudes.flux_to_mag(np.array([-1.0]))[0])
    # 1 count/s at a zero point of 20.08 is 10^(0.4 * 2.42) nanomaggies.
    assert magnitudes.rescale_flux(1.0, 20.08) == pytest.approx(10 ** (-0.4 * (20.08 - 22.5)))
    ivar = magnitudes.mag_err_to_flux_ivar(np.array([100.0]), np.array([0.01]))
    assert 1 / np.sqrt(ivar[0]) == pytest.approx(100.0 * 0.01 * np.log(10) / 2.5)
