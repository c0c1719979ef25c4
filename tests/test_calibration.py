"""Post-hoc calibration: maps fitted on one half of known synthetic densities, checked on the other."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.special import ndtr

from galaxyprop.calibration import (
    CalibrationSettings,
    Calibrator,
    ProbitMap,
    calibration_rule_problems,
    calibration_summary,
    fit_calibration,
    ks_noise,
)
from galaxyprop.data.io import load_object, save_object
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import (
    Grid,
    cdf_at,
    gaussian_densities,
    histogram_densities,
    probit_cdf_at_edges,
    probit_pit,
    quantile_densities,
    quantiles,
)
from galaxyprop.evaluation.metrics import crps
from galaxyprop.heads.base import Head, Prediction

GRID = Grid(-1.0, 1.0, 200)
FINE = CalibrationSettings().grid(GRID)
N = 4000


def gaussian_sample(seed: int, claimed_over_true: float, skew: bool = False, n: int = N):
    """Truths around means with per-galaxy widths, and Gaussian densities of `claimed_over_true`
    times the true width (below 1: over-confident). `skew`: the truths scatter as a centred gamma."""
    rng = np.random.default_rng(seed)
    mean, sigma = rng.uniform(-0.4, 0.4, n), rng.uniform(0.02, 0.08, n)
    noise = (rng.gamma(2.0, 1.0, n) - 2.0) / np.sqrt(2.0) if skew else rng.normal(size=n)
    return gaussian_densities(mean, claimed_over_true * sigma, FINE), mean + sigma * noise


def held_out(pdf: np.ndarray, y: np.ndarray, fields=None, settings=CalibrationSettings()):
    """Fit on the first half, return the calibrator and the second half's summary (on the target grid)."""
    half = len(y) // 2
    fit_fields = None if fields is None else fields[:half]
    result = fit_calibration(pdf[:half], FINE, y[:half], fit_fields, settings)
    test_fields = None if fields is None else fields[half:]
    calibrated = result.calibrator.apply(pdf[half:], test_fields)
    return result, calibration_summary(calibrated, FINE, y[half:], test_fields)


@pytest.mark.parametrize("claimed, skew", [(1 / 3, False), (1 / 5, False), (2.0, False), (1.0, True)],
                         ids=["3x too narrow", "5x too narrow", "2x too wide", "skewed truths"])
@pytest.mark.slow
def test_maps_calibrate_held_out_galaxies(claimed, skew):
    pdf, y = gaussian_sample(0, claimed, skew)
    half = N // 2
    raw = calibration_summary(pdf[half:], FINE, y[half:])["all"]
    result, summary = held_out(pdf, y)
    out = summary["all"]
    assert result.calibrator.global_map is not None
    assert abs(out["coverage_68"] - 0.6827) <= 0.03 and abs(out["coverage_95"] - 0.9545) <= 0.02
    assert out["pit_ks"] < 2 * ks_noise(out["n"])   # the map's own noise adds to the held-out half's
    assert out["crps"] < raw["crps"]                  # calibration lowers the proper score
    if claimed < 1:
        assert raw["coverage_68"] < 0.4               # what the user got before


@pytest.mark.slow
def test_a_histogram_with_empty_bins_is_calibrated_through_the_kernel():
    """KNN-like densities: 20 neighbours' histogram, too narrow and with empty bins between them."""
    rng = np.random.default_rng(3)
    mean, sigma = rng.uniform(-0.4, 0.4, N), rng.uniform(0.02, 0.06, N)
    y = mean + sigma * rng.normal(size=N)
    neighbours = mean[:, None] + 0.5 * sigma[:, None] * rng.normal(size=(N, 20))
    pdf = histogram_densities(neighbours, None, FINE)
    assert (pdf == 0).mean() > 0.8
    result, summary = held_out(pdf, y)
    assert result.report["kernel_bins"] > 0
    assert abs(summary["all"]["coverage_68"] - 0.6827) <= 0.03
    assert abs(summary["all"]["coverage_95"] - 0.9545) <= 0.02


@pytest.mark.slow
def test_calibrated_densities_are_left_alone():
    pdf, y = gaussian_sample(4, 1.0)
    result, summary = held_out(pdf, y)
    assert result.calibrator.global_map is None and result.report["method"].startswith("identity")
    np.testing.assert_array_equal(result.validation_pdf, pdf[: N // 2] / (pdf[: N // 2].sum(1, keepdims=True)
                                                                          * FINE.width))
    assert abs(summary["all"]["coverage_68"] - 0.6827) <= 0.03


@pytest.mark.slow
def test_a_field_that_one_map_leaves_off_gets_its_own():
    """North densities 3x too narrow, south ones right: one global map would split the difference."""
    pdf_n, y_n = gaussian_sample(5, 1 / 3)
    pdf_s, y_s = gaussian_sample(6, 1.0)
    order = np.random.default_rng(7).permutation(2 * N)
    pdf, y = np.concatenate([pdf_n, pdf_s])[order], np.concatenate([y_n, y_s])[order]
    fields = np.array(["N"] * N + ["S"] * N, dtype=object)[order]
    result, summary = held_out(pdf, y, fields)
    assert result.report["fields_off_with_global_map"] and result.calibrator.fields
    for field in ("N", "S"):
        assert abs(summary[field]["coverage_68"] - 0.6827) <= 0.03, field
        assert abs(summary[field]["coverage_95"] - 0.9545) <= 0.02, field
    # without the field, a galaxy gets the global map: right on average, wrong per field
    alone = result.calibrator.apply(pdf[N:], None)
    north = fields[N:] == "N"
    pooled = calibration_summary(alone, FINE, y[N:], fields[N:])
    assert abs(pooled["all"]["coverage_68"] - 0.6827) <= 0.03
    assert pooled["N"]["coverage_68"] < 0.64 and pooled["S"]["coverage_68"] > 0.72
    assert north.any()


def test_too_few_validation_rows_leave_the_head_uncalibrated():
    pdf, y = gaussian_sample(8, 1 / 3, n=150)
    result = fit_calibration(pdf, FINE, y, settings=CalibrationSettings(min_rows=200))
    assert result.calibrator is None and not result.report["calibrated"]
    assert "150 validation rows, fewer than calibration.min_calibration_rows = 200" in result.report["reason"]
    with pytest.raises(GalaxypropError, match="min_calibration_rows >= 20"):
        CalibrationSettings.from_params({"min_calibration_rows": 5})
    with pytest.raises(GalaxypropError, match="calibration"):
        CalibrationSettings.from_params({"folds": "abc"})


def test_the_probit_map_of_a_gaussian_scale_error_is_the_line_through_zero():
    """A Gaussian s times too narrow has probit PITs s x N(0, 1): the fitted map is t = v / s."""
    v = 3.0 * stats.norm.ppf((np.arange(20000) + 0.5) / 20000)
    fitted = ProbitMap.fit(v)
    np.testing.assert_allclose(fitted(np.array([-6.0, -3.0, 0.0, 1.5, 9.0])), [-2.0, -1.0, 0.0, 0.5, 3.0], atol=5e-3)
    assert fitted(np.array([np.inf]))[0] == np.inf and fitted(np.array([-np.inf]))[0] == -np.inf
    with pytest.raises(GalaxypropError, match="too few to fit"):
        ProbitMap.fit(v[:12])


def test_probit_cdf_keeps_both_tails_and_matches_the_pit():
    pdf = gaussian_densities(np.array([0.0]), np.array([0.05]), GRID)
    probit = probit_cdf_at_edges(pdf, GRID)[0]
    inside = np.abs(GRID.edges) < 0.35                      # within 7 sigma: Phi^-1(F) is the standardised edge
    np.testing.assert_allclose(probit[inside], GRID.edges[inside] / 0.05, atol=2e-3)
    assert probit[0] == -np.inf and probit[-1] == np.inf
    values = np.array([-0.31, -0.02, 0.0, 0.13, 0.33])
    np.testing.assert_allclose(probit_pit(np.repeat(pdf, 5, 0), GRID, values), values / 0.05, atol=5e-3)
    np.testing.assert_allclose(ndtr(probit_pit(np.repeat(pdf, 5, 0), GRID, values)),
                               cdf_at(np.repeat(pdf, 5, 0), GRID, values), atol=1e-12)


def test_a_density_through_a_gaussians_quantiles_is_that_gaussian():
    levels = ndtr(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]))
    mean, sigma = np.array([-0.2, 0.1]), np.array([0.03, 0.1])
    through = quantile_densities(mean[:, None] + sigma[:, None] * stats.norm.ppf(levels), levels, FINE)
    np.testing.assert_allclose(through, gaussian_densities(mean, sigma, FINE), atol=1e-6 * FINE.n_bins)
    # crossing quantiles are sorted, not refused
    crossed = quantile_densities(np.array([[0.0, -0.1, 0.05, 0.1, 0.2]]), levels, FINE)
    np.testing.assert_allclose(quantiles(crossed, FINE, levels[1:2]), [[0.0]], atol=1e-3)
    with pytest.raises(GalaxypropError, match="levels must increase"):
        quantile_densities(np.zeros((1, 2)), np.array([0.5, 0.2]), FINE)


@pytest.mark.slow
def test_the_calibrator_survives_save_and_load(tmp_path):
    pdf, y = gaussian_sample(9, 1 / 3)
    result = fit_calibration(pdf, FINE, y, np.where(np.arange(N) % 2, "N", "S"))
    save_object(result.calibrator, tmp_path / "calibrator.joblib")
    loaded = load_object(tmp_path / "calibrator.joblib", Calibrator)
    np.testing.assert_array_equal(loaded.apply(pdf[:50], ["N"] * 50), result.calibrator.apply(pdf[:50], ["N"] * 50))
    assert np.isclose(crps(loaded.apply(pdf[:50]), FINE, y[:50]).mean(),
                      crps(result.calibrator.apply(pdf[:50]), FINE, y[:50]).mean())


def test_the_calibration_rule_names_the_numbers():
    assert calibration_rule_problems({"n": 1000, "coverage_68": 0.70, "pit_ks": 0.03}) == []
    found = calibration_rule_problems({"n": 1000, "coverage_68": 0.129, "pit_ks": 0.41}, where="validation 'all'")
    assert found == ["68 % interval covers 0.129 on validation 'all', outside 0.683 +- 0.05",
                     "PIT KS 0.4100 on validation 'all' is not below 2 x the noise level 1.358/sqrt(1000) = 0.0859"]


class Identity:
    """Features that are the inputs themselves: each row is (mean, true sigma)."""

    input_kind, names = "embeddings", ["mean", "sigma"]

    def transform(self, inputs):
        return np.asarray(inputs, np.float32)


class Overconfident(Head):
    """A head that knows each galaxy's mean and width but claims a width 4x too narrow."""

    name, gives_density = "toy", True

    def fit(self, X, y):
        return self

    def predict(self, X):
        return Prediction(X[:, 0].astype(float), X[:, 1].astype(float) / 4)

    def predict_pdf(self, X, grid):
        return gaussian_densities(X[:, 0], X[:, 1] / 4, grid)


@pytest.mark.slow
def test_a_predictor_serves_calibrated_quantiles_and_keeps_its_point_estimate(tmp_path):
    """MC-dropout-like Gaussians 4x too narrow through the Predictor: the served [q16, q84] and
    [q02, q98] cover 68 % and 95 % of held-out truths; the prediction is the head's own."""
    from galaxyprop.registry.predictor import QUANTILE_COLUMNS, Predictor

    rng = np.random.default_rng(10)
    mean, sigma = rng.uniform(-0.4, 0.4, N), rng.uniform(0.02, 0.08, N)
    X, y = np.stack([mean, sigma], axis=1), mean + sigma * rng.normal(size=N)
    predictor = Predictor("kcorr_r01", Identity(), Overconfident(), GRID)
    raw = predictor.predict(X[N // 2:])
    assert ((y[N // 2:] >= raw["q16"]) & (y[N // 2:] <= raw["q84"])).mean() < 0.35
    predictor.calibrate(X[:N // 2], y[:N // 2])
    predictor.save(tmp_path / "predictor.joblib")
    out = Predictor.load(tmp_path / "predictor.joblib").predict(X[N // 2:])
    assert list(out.columns) == ["prediction", "spread", *QUANTILE_COLUMNS, "density"]
    truth = y[N // 2:]
    assert abs(((truth >= out["q16"]) & (truth <= out["q84"])).mean() - 0.6827) <= 0.03
    assert abs(((truth >= out["q02"]) & (truth <= out["q98"])).mean() - 0.9545) <= 0.02
    np.testing.assert_allclose(out["prediction"], mean[N // 2:], rtol=1e-6)
    np.testing.assert_allclose(out["spread"], (out["q84"] - out["q16"]) / 2)
    assert (np.diff(out[QUANTILE_COLUMNS].to_numpy(), axis=1) > 0).all()
    np.testing.assert_allclose(np.stack(out["density"]).sum(1) * GRID.width, 1.0, rtol=1e-5)
    # the served spread is about the truth's scatter, 4x the head's
    assert np.median(out["spread"] / sigma[N // 2:]) == pytest.approx(1.0, abs=0.1)
    with pytest.raises(GalaxypropError, match="unknown survey field 'east' \\(row 0\\)"):
        predictor.predict(pd.DataFrame(X[:2]).to_numpy(), fields="east")


def test_a_predictor_saved_before_calibration_loads_uncalibrated(tmp_path):
    from galaxyprop.registry.predictor import Predictor

    rng = np.random.default_rng(11)
    X = np.stack([rng.uniform(-0.4, 0.4, 50), np.full(50, 0.05)], axis=1)
    old = Predictor("z", Identity(), Overconfident(), GRID)
    del old.__dict__["calibration"], old.__dict__["calibration_report"]   # what an older version pickled
    save_object(old, tmp_path / "old.joblib")
    loaded = Predictor.load(tmp_path / "old.joblib")
    assert not loaded.calibrated and loaded.calibration_method == "none: saved before galaxyprop calibrated its models"
    assert len(loaded.predict(X)) == 50
