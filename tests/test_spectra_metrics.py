"""The spectrum metrics on spectra whose answers are known: Dn4000, an emission line's equivalent width,
the latent MSE relative to the mean predictor, and the recovery summary."""

from __future__ import annotations

import numpy as np
import pytest

from galaxyprop.data.astroclip import DESI_WAVE
from galaxyprop.spectra.metrics import (
    dn4000,
    latent_mse_per_component,
    latent_mse_relative,
    latent_mse_relative_unweighted,
    line_equivalent_width,
    recovery,
)


@pytest.mark.parametrize("z", [0.0, 0.1, 0.3])
def test_dn4000_of_a_flat_fnu_spectrum_is_one_and_of_a_step_the_step(z):
    flat_fnu = DESI_WAVE ** -2.0                      # f_lambda of a constant f_nu
    assert dn4000(DESI_WAVE, flat_fnu, z) == pytest.approx(1.0, abs=1e-9)
    step = np.where(DESI_WAVE / (1 + z) > 3975.0, 1.7, 1.0) * flat_fnu   # a 1.7x break at 3975 A rest
    assert dn4000(DESI_WAVE, step, z) == pytest.approx(1.7, rel=1e-6)
    assert np.isnan(dn4000(DESI_WAVE, flat_fnu, 1.6))   # the break beyond the DESI window


@pytest.mark.parametrize("z", [0.05, 0.25])
def test_the_equivalent_width_of_a_gaussian_line_is_its_flux_over_the_continuum(z):
    continuum, flux_rest, sigma = 2.0, 30.0, 2.0      # rest-frame line flux 30 x 1e-17 A: EW = 15 A
    centre = 6564.61 * (1 + z)
    # a line of rest-frame equivalent width W has observed flux W (1 + z) f_c
    line = continuum * flux_rest / continuum * (1 + z) / (np.sqrt(2 * np.pi) * sigma * (1 + z)) * np.exp(
        -0.5 * ((DESI_WAVE - centre) / (sigma * (1 + z))) ** 2)
    spectrum = np.full_like(DESI_WAVE, continuum) + line
    assert line_equivalent_width(DESI_WAVE, spectrum, z) == pytest.approx(flux_rest / continuum, rel=0.01)
    assert line_equivalent_width(DESI_WAVE, np.full_like(DESI_WAVE, continuum), z) == pytest.approx(0.0, abs=1e-9)
    absorbed = np.full_like(DESI_WAVE, continuum) - 0.5 * line
    assert line_equivalent_width(DESI_WAVE, absorbed, z) == pytest.approx(-0.5 * flux_rest / continuum, rel=0.01)


def test_latent_mse_relative_scores_the_mean_one_and_the_truth_zero():
    rng = np.random.default_rng(0)
    train = rng.normal(0, [10.0, 1.0, 0.1], size=(5000, 3))
    true = rng.normal(0, [10.0, 1.0, 0.1], size=(2000, 3))
    mean = np.broadcast_to(train.mean(axis=0), true.shape)
    assert latent_mse_relative(true, mean, train) == pytest.approx(1.0, abs=0.05)
    assert latent_mse_relative_unweighted(true, mean, train) == pytest.approx(1.0, abs=0.05)
    assert latent_mse_relative(true, true, train) == 0.0
    # the first latent exact, the others the mean: weighted ~ 2 % left (its variance dominates), plain 2/3
    half = np.column_stack([true[:, 0], mean[:, 1:]])
    assert latent_mse_relative(half, true, train) == pytest.approx((1.0 + 0.01) / 101.01, rel=0.1)
    assert latent_mse_relative_unweighted(true, half, train) == pytest.approx(2 / 3, abs=0.05)
    np.testing.assert_allclose(latent_mse_per_component(true, half, train), [0.0, 1.0, 1.0], atol=0.06)


def test_recovery_of_a_biased_prediction():
    true = np.linspace(1.0, 2.0, 101)
    assert recovery(true, true) == {"r2": 1.0, "bias": 0.0, "scatter": 0.0, "n": 101}
    shifted = recovery(true, true + 0.1)
    assert shifted["bias"] == pytest.approx(0.1) and shifted["r2"] < 1.0 and shifted["n"] == 101
    assert recovery(np.array([1.0, np.nan]), np.array([1.0, 2.0]))["n"] == 1
