"""The neural heads on problems with known answers: an MLP fits a linear target and its MC-dropout
spread grows off the training range; the CNN learns a quantity drawn in the images; the multimodal
CNN learns a target that needs the catalogue features and the images together."""

from __future__ import annotations

import numpy as np
import pytest

from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.metrics import regression_metrics
from galaxyprop.features.multimodal import ImagesAndFeatures
from galaxyprop.heads import make_head
from galaxyprop.heads.base import Head


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


@pytest.mark.slow
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


def colours_and_sizes(n: int, size: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grey round galaxies of one flux and random sizes, with catalogue features (a colour and two
    without information) the images do not show; the target is the colour plus the log size, so
    either input alone leaves half its variance (1/3 of 2/3) unexplained."""
    rng = np.random.default_rng(seed)
    colour, log_size = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    sigma = 2.0 * 1.6 ** log_size
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    profile = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma[:, None, None] ** 2)) / (2 * np.pi * sigma[:, None, None] ** 2)
    images = 30.0 * profile[:, None] * np.ones((1, 3, 1, 1)) + rng.normal(0, 0.05, (n, 3, size, size))
    features = np.stack([colour, rng.normal(0, 1, n), rng.uniform(-1, 1, n)], axis=1)
    return images.astype(np.float32), features.astype(np.float32), colour + log_size


@pytest.mark.slow
def test_multimodal_cnn_learns_what_needs_both_inputs():
    images, features, target = colours_and_sizes(900)
    train, val, test = slice(0, 600), slice(600, 700), slice(700, None)
    net = dict(hidden_layers=1, width=32, dropout=0.05, learning_rate=3e-3, batch_size=64, max_epochs=12, patience=12,
               n_mc=10, seed=0)
    cnn = dict(channels=8, crop=16, max_shift=2)

    def mse(name: str, inputs, **hyperparameters) -> float:
        head = make_head(name, **net, **hyperparameters)
        head.fit(inputs(train), target[train], validation=(inputs(val), target[val]))
        return float(np.mean((head.predict(inputs(test)).value - target[test]) ** 2))

    both = mse("cnn_mm", lambda rows: ImagesAndFeatures(images[rows], features[rows]), photometry_width=32, **cnn)
    images_alone = mse("cnn", lambda rows: images[rows], **cnn)
    features_alone = mse("mlp", lambda rows: features[rows])
    assert min(images_alone, features_alone) > 0.3          # each leaves the other's 1/3 (0.35, 0.34)
    assert both < 0.7 * min(images_alone, features_alone)   # (0.048: 0.14 of the better)


def test_multimodal_cnn_checks_its_inputs():
    images, features, target = colours_and_sizes(120, size=16)
    head = make_head("cnn_mm", channels=4, crop=12, max_shift=2, photometry_layers=1, photometry_width=8, width=8,
                     max_epochs=1, n_mc=4, seed=0)
    head.fit(ImagesAndFeatures(images, features), target)
    assert head.predict(ImagesAndFeatures(images[:7], features[:7])).value.shape == (7,)
    nan_features, nan_images = features.copy(), images.copy()
    nan_features[2, 1] = np.nan
    nan_images[1, 0, 3, 3] = np.nan
    bad = {"takes cutouts and catalogue features together": images,
           "120 cutouts but 119 rows of catalogue features": ImagesAndFeatures(images, features[:-1]),
           "features row 2 has non-finite values": ImagesAndFeatures(images, nan_features),
           "cutouts row 1 has NaN": ImagesAndFeatures(nan_images, features),
           "2 columns, the head was fitted on 3": ImagesAndFeatures(images, features[:, :2]),
           "at least 12x12": ImagesAndFeatures(images[:, :, :10, :10], features)}
    for message, X in bad.items():
        with pytest.raises(GalaxypropError, match=message) as error:
            head.predict(X)
        assert "\n" not in str(error.value)
    with pytest.raises(GalaxypropError, match="takes cutouts and catalogue features together"):
        make_head("cnn_mm").fit(features, target)
