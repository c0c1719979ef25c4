"""The spectrum heads on a known function (latent error, spread, pickling, input checks), and the band
integral and reduced chi^2 the spectrum metrics rest on (the indices themselves: test_spectra_metrics.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from galaxyprop.errors import GalaxypropError
from galaxyprop.spectra.heads import make_spectrum_head, spectrum_targets, split_targets
from galaxyprop.spectra.metrics import (
    band_integral,
    latent_mse_relative,
    median_reduced_chi2,
    recovery,
    reduced_chi2,
)

Z = np.array([0.02, 0.1, 0.2, 0.35])


def test_band_integral_is_exact_for_linear_data_and_nan_off_the_grid():
    wave = np.linspace(1.0, 10.0, 37)
    values = np.vstack([3.0 + 2.0 * wave, np.ones_like(wave)])
    np.testing.assert_allclose(band_integral(wave, values, [2.3, 1.0], [7.9, 10.0]),
                               [3 * 5.6 + (7.9**2 - 2.3**2), 9.0])
    assert np.isnan(band_integral(wave, values[:1], 0.5, 2.0)).all()


def test_reduced_chi2_and_recovery():
    rng = np.random.default_rng(1)
    model = np.full((50, 4000), 5.0)
    ivar = np.full_like(model, 4.0)
    observed = model + rng.normal(0, 0.5, model.shape)
    ivar[:, :100] = 0.0                                     # masked pixels do not count
    observed[:, :100] = 1e6
    chi2 = reduced_chi2(observed, ivar, model, n_latent=6)
    assert chi2.shape == (50,) and np.allclose(chi2, 1.0, atol=0.1)
    assert median_reduced_chi2(observed, ivar, 2 * model) > 100
    nan_model = model.copy()
    nan_model[:, 100:3990] = np.nan                         # 10 pixels left: dof 10 - 6 - 2 = 2
    assert np.isfinite(reduced_chi2(observed, ivar, nan_model, n_latent=6)).all()
    assert np.isnan(reduced_chi2(observed, ivar, nan_model, n_latent=8)).all()
    true = rng.normal(size=1000)
    result = recovery(true, true + 0.1 + rng.normal(0, 0.05, 1000))
    assert result["n"] == 1000 and result["bias"] == pytest.approx(0.1, abs=0.01)
    assert result["scatter"] == pytest.approx(0.05, rel=0.15) and result["r2"] > 0.98
    assert recovery(np.array([1.0, np.nan]), np.array([1.0, 2.0]))["n"] == 1


def linear_problem(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, 4))
    weights = np.random.default_rng(99).normal(size=(4, 6))
    latents = X @ weights
    return X.astype(np.float32), spectrum_targets(latents, 0.2 + 0.1 * X[:, 0], 0.5 * X[:, 1])


@pytest.mark.parametrize("name, options", [("knn", {}),
                                           pytest.param("mlp", {"max_epochs": 40, "n_members": 3, "width": 32},
                                                        marks=pytest.mark.slow)])   # 3 networks: seconds
def test_spectrum_heads_recover_a_linear_function_with_a_spread(name, options):
    X, Y = linear_problem(3000, 0)
    X_val, Y_val = linear_problem(400, 1)
    X_test, Y_test = linear_problem(400, 2)
    head = make_spectrum_head(name, **options).fit(X, Y, X_val, Y_val)
    mean, std = head.predict(X_test)
    assert mean.shape == std.shape == Y_test.shape
    latents, z, _ = split_targets(mean)
    assert latent_mse_relative(split_targets(Y_test)[0], latents, split_targets(Y)[0]) < 0.1
    assert recovery(split_targets(Y_test)[1], z)["r2"] > 0.9
    assert (std > 0).all()
    draws = head.sample(X_test[:20], 16, np.random.default_rng(0))
    assert draws.shape == (16, 20, Y.shape[1])
    assert np.abs(draws.mean(axis=0) - mean[:20]).mean() < 3 * std[:20].mean()
    again = pickle.loads(pickle.dumps(head))
    np.testing.assert_allclose(again.predict(X_test[:20])[0], mean[:20], rtol=1e-5, atol=1e-6)
    if name == "knn":
        assert head.k_ in head.validation_scores_


def test_spectrum_heads_check_their_inputs():
    X, Y = linear_problem(50, 0)
    with pytest.raises(GalaxypropError, match="unknown spectrum head"):
        make_spectrum_head("gbt")
    with pytest.raises(GalaxypropError, match="non-finite"):
        make_spectrum_head("knn").fit(X, np.where(np.arange(Y.size).reshape(Y.shape) == 3, np.nan, Y))
    head = make_spectrum_head("knn", ks=(4,)).fit(X, Y)
    with pytest.raises(GalaxypropError, match="5 columns"):
        head.predict(np.zeros((2, 5)))
