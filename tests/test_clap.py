"""CLAP's pieces on toys with known answers, and the head end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from galaxyprop.evaluation.densities import Grid, cdf_at, gaussian_densities, moments
from galaxyprop.evaluation.metrics import density_metrics
from galaxyprop.heads import make_head
from galaxyprop.heads.clap.adaptive_knn import AdaptiveKNN, log_k_grid, pit_counts, recalibrate
from galaxyprop.heads.clap.projection import supervised_contrastive_loss
from galaxyprop.heads.clap.refit import fit_density_net

GRID = Grid(-3.0, 3.0, 300)


def test_supervised_contrastive_loss_by_hand():
    latent = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]), dim=1)
    target = torch.tensor([0.0, 0.05, 1.0])       # 0 and 1 are positives; 2 has none
    loss = supervised_contrastive_loss(latent, target, tolerance=0.1, temperature=0.5)
    s = (latent @ latent.T / 0.5).numpy()
    expected = -0.5 * ((s[0, 1] - np.logaddexp(s[0, 1], s[0, 2])) + (s[1, 0] - np.logaddexp(s[1, 0], s[1, 2])))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # Positives that share a direction cost less than positives that do not.
    aligned = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0]]), dim=1)
    assert supervised_contrastive_loss(aligned, target, 0.1, 0.5) < loss


def test_recalibration_makes_skewed_pits_uniform():
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 0.5, 6000)
    y = mean + rng.normal(0, 0.2, 6000)
    # Biased by 0.3 sigma: the PIT histogram slopes (skewed); biased and over-confident: worse.
    for shift, claimed, degree in ((0.06, 0.2, 3), (0.05, 0.15, 5)):
        pdf = gaussian_densities(mean + shift, np.full(6000, claimed), GRID)
        pit = cdf_at(pdf, GRID, y)
        before = density_metrics(pdf[3000:], GRID, y[3000:])
        counts = np.broadcast_to(pit_counts(pit[:3000], 20), (6000, 20))   # the PITs of a calibration half
        after = density_metrics(recalibrate(pdf, GRID, counts, degree)[3000:], GRID, y[3000:])   # the other half
        # 0.035: about the KS statistic's 95 % point for 3000 truly uniform PITs (0.025) plus the fit's error
        assert before["pit_ks"] > 0.1 and after["pit_ks"] < 0.035, (shift, claimed)
        assert abs(after["coverage_68"] - 0.683) < 0.03 and after["crps"] < before["crps"]
    # A calibrated population is left (nearly) alone.
    calibrated = gaussian_densities(mean, np.full(6000, 0.2), GRID)
    flat = pit_counts(cdf_at(calibrated, GRID, y), 20)[None].repeat(2, 0)
    np.testing.assert_allclose(recalibrate(calibrated[:2], GRID, flat, 3), calibrated[:2], atol=0.06 * calibrated.max())


@pytest.mark.slow
def test_refit_network_reproduces_knn_like_densities():
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(3000, 2)).astype(np.float32)
    mean, sigma = 0.8 * latent[:, 0], 0.15 + 0.1 * np.abs(latent[:, 1])    # a smooth function of the latent
    probabilities = gaussian_densities(mean, sigma, GRID) * GRID.width
    net = fit_density_net(latent[:2500], probabilities[:2500], (latent[2500:], probabilities[2500:]),
                          width=128, layers=2, learning_rate=3e-3, weight_decay=0.0, batch_size=256,
                          max_epochs=40, patience=5, seed=0)
    fitted = net.probabilities(latent[2500:]) / GRID.width
    fitted_mean, fitted_std = moments(fitted, GRID)
    assert np.median(np.abs(fitted_mean - mean[2500:])) < 0.03
    assert np.median(np.abs(fitted_std - sigma[2500:])) < 0.03


def test_adaptive_knn_leaves_itself_out_and_calibrates():
    rng = np.random.default_rng(2)
    latent = rng.uniform(-1, 1, size=(4000, 2)).astype(np.float32)
    noise = 0.1 + 0.2 * (latent[:, 0] > 0)                     # two regimes that need different k
    y = latent[:, 1] + rng.normal(0, noise)
    knn = AdaptiveKNN(latent[:3000], y[:3000], GRID, k_min=8, k_max=256, n_calibration=100)
    assert list(knn.k_grid) == [8, 16, 32, 64, 128, 256] and list(log_k_grid(8, 1024, 20)) == [8, 16]
    rows = np.arange(50)
    assert not (knn.neighbours(latent[rows], 20, exclude=rows) == rows[:, None]).any()
    pdf, k = knn.densities(latent[3000:])
    metrics = density_metrics(pdf, GRID, y[3000:])
    assert metrics["pit_ks"] < 0.05 and abs(metrics["coverage_68"] - 0.683) < 0.04
    # Where the target is sharp, small neighbourhoods win; where it is broad, larger ones.
    sharp = latent[3000:, 0] <= 0
    assert np.median(k[sharp]) <= np.median(k[~sharp])


@pytest.fixture(scope="module")
def toy_clap():
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(4000, 3)).astype(np.float32)
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + rng.normal(0, 0.1 + 0.2 * (X[:, 2] > 0))
    grid = {"low": -2.5, "high": 2.5, "n_bins": 250}
    head = make_head("clap", grid=grid, latent_dim=8, projection_width=64, k_max=256, n_calibration=100,
                     refit_width=128, max_epochs=20, patience=4, n_realisations=2, seed=0)
    validation = (X[2700:3300], y[2700:3300])
    head.fit(X[:2700], y[:2700], validation=validation, **head.trial_options)
    assert len(head.realisations_) == 1                      # a tuning trial scores one realisation
    head.finalise(X[:2700], y[:2700], validation=validation)
    return head, X[3300:], y[3300:], Grid.from_params(grid)


@pytest.mark.slow
def test_clap_head_gives_calibrated_and_accurate_densities(toy_clap, tmp_path):
    head, X, y, grid = toy_clap
    assert len(head.realisations_) == 2
    # Through the index: calibrated (700 galaxies: the KS statistic's 95 % point is 0.05).
    knn = density_metrics(head.knn_pdf(X), grid, y)
    assert knn["pit_ks"] < 0.06 and abs(knn["coverage_68"] - 0.683) < 0.05
    # The refitted networks learn the mean of noisy KNN densities over nearby latents, a little broader
    # than each (here 68 % coverage about 0.77; on the mock survey within 2 points of the index's).
    pdf = head.predict_pdf(X)
    refit = density_metrics(pdf, grid, y)
    assert refit["pit_ks"] < 0.09 and 0.65 < refit["coverage_68"] < 0.80
    assert refit["crps"] < 1.05 * knn["crps"]
    prediction = head.predict(X)
    assert np.median(np.abs(prediction.value - y)) < 0.15
    assert np.corrcoef(prediction.spread, (X[:, 2] > 0))[0, 1] > 0.5     # broader where the noise is
    assert np.median(np.abs(moments(head.knn_pdf(X), grid)[0] - prediction.value)) < 0.05
    head.save(tmp_path / "clap.joblib")
    np.testing.assert_allclose(type(head).load(tmp_path / "clap.joblib").predict_pdf(X[:50]), pdf[:50])
    assert head.predict_pdf(X[:50], Grid(-2.5, 2.5, 50)).shape == (50, 50)


def test_clap_trains_between_one_and_all_of_its_realisations():
    from galaxyprop.errors import GalaxypropError

    X, y = np.zeros((100, 2), np.float32), np.zeros(100)
    head = make_head("clap", grid={"low": -1, "high": 1, "n_bins": 20}, n_realisations=2)
    for bad in (0, 3):
        with pytest.raises(GalaxypropError, match=f"realisations must be from 1 to n_realisations \\(2\\), got {bad}"):
            head.fit(X, y, realisations=bad)
