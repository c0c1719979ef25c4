"""The neural heads on problems with known answers: an MLP fits a linear target and its MC-dropout
spread grows off the training range; the CNN learns a quantity drawn in the images."""

from __future__ import annotations

import numpy as np
import pytest

from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.metrics import regression_metrics
from galaxyprop.heads import Head, make_head


def linear_problem(n: int, noise: float = 0.05, seed: int = 0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 4)) * scale
    y = X @ np.array([1.0, -0.5, 0.25, 0.0]) + rng.normal(0, noise, n)
    return X.astype(np.float32), y


@pytest.mark.slow
def test_mlp_fits_a_linear_target_and_its_spread_grows_off_the_training_range(tmp_path):
    X, y = linear_problem(3000)
    X_val, y_val = linear_problem(500, seed=1)
    head = make_head("mlp", hidden_layers=2, width=64, dropout=0.05, learning_rate=3e-3, max_epochs=40,
                     patience=8, n_mc=40, seed=0).fit(X, y, validation=(X_val, y_val))
    X_test, y_test = linear_problem(500, seed=2)
    inside = head.predict(X_test)
    rmse = regression_metrics(y_test, inside.value, 0.1)["rmse"]
    assert rmse < 0.1            # the noise is 0.05; predicting the mean would give 0.67
    best = min(head.history_, key=lambda h: h["val_loss"])
    assert head.best_epoch_ == best["epoch"]
    outside = head.predict(linear_problem(500, seed=3, scale=4.0)[0])
    assert np.median(outside.spread) > 3 * np.median(inside.spread)
    # MC prediction is seeded: the same answer twice, and after a save/load round trip
    np.testing.assert_allclose(head.predict(X_test[:50]).value, inside.value[:50], rtol=1e-5, atol=1e-6)
    head.save(tmp_path / "mlp.joblib")
    np.testing.assert_allclose(Head.load(tmp_path / "mlp.joblib").predict(X_test[:50]).spread, inside.spread[:50])


def test_mlp_without_dropout_samples_has_zero_spread_and_checks_inputs():
    X, y = linear_problem(300)
    head = make_head("mlp", max_epochs=2, n_mc=0).fit(X, y)
    assert np.all(head.predict(X[:10]).spread == 0)
    with pytest.raises(GalaxypropError, match="5 columns, the head was fitted on 4"):
        head.predict(np.zeros((3, 5)))
    with pytest.raises(GalaxypropError, match="row 1 has non-finite"):
        head.predict(np.where(np.arange(12).reshape(3, 4) == 5, np.nan, 0.0))
    with pytest.raises(GalaxypropError, match="non-finite values"):
        make_head("mlp").fit(X, np.where(np.arange(300) == 7, np.inf, y))


def blobs(n: int, size: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Round Gaussian galaxies on sky noise; the target is the log of their total flux."""
    rng = np.random.default_rng(seed)
    log_flux = rng.uniform(0.5, 2.0, n)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    profile = np.exp(-(xx ** 2 + yy ** 2) / (2 * 2.0 ** 2)) / (2 * np.pi * 2.0 ** 2)
    colours = np.array([0.6, 1.0, 1.4])[None, :, None, None]
    images = 10 ** log_flux[:, None, None, None] * colours * profile + rng.normal(0, 0.05, (n, 3, size, size))
    return images.astype(np.float32), log_flux


def test_cnn_learns_the_flux_drawn_in_the_images(tmp_path):
    images, target = blobs(700)
    head = make_head("cnn", channels=8, crop=16, max_shift=2, width=32, dropout=0.05, learning_rate=3e-3,
                     batch_size=64, max_epochs=20, patience=5, n_mc=10, seed=0)
    head.fit(images[:500], target[:500], validation=(images[500:600], target[500:600]))
    prediction = head.predict(np.moveaxis(images[600:], 1, -1))   # the AstroCLIP layout (N, H, W, 3) too
    assert regression_metrics(target[600:], prediction.value, 0.1)["r2"] > 0.9
    assert np.all(prediction.spread > 0)
    with pytest.raises(GalaxypropError, match="at least 16x16"):
        head.predict(images[:2, :, :10, :10])
