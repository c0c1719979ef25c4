"""Density utilities and metrics on toys with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from galaxyprop.data.density_file import read_densities, write_densities
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import (
    Grid,
    cdf_at,
    gaussian_densities,
    harmonic_mean,
    histogram_densities,
    moments,
    normalise,
    quantiles,
    resample,
)
from galaxyprop.evaluation.metrics import crps, density_metrics, w1_to_uniform

GRID = Grid(-2.0, 2.0, 400)


def gaussian_toy(n: int, true_sigma: float, claimed_sigma: float, shift: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    mean = rng.normal(0.0, 0.3, n)
    y = mean + rng.normal(0.0, true_sigma, n)
    return gaussian_densities(mean + shift, np.full(n, claimed_sigma), GRID), y


def test_calibrated_gaussians_give_uniform_pit():
    pdf, y = gaussian_toy(5000, 0.1, 0.1)
    m = density_metrics(pdf, GRID, y)
    assert m["pit_ks"] < 0.025 and m["pit_w1"] < 0.012 and m["pit_outlier_rate"] < 0.002
    assert abs(m["coverage_68"] - 0.6827) < 0.02 and abs(m["coverage_95"] - 0.9545) < 0.01


def test_over_confident_gaussians_give_a_u_shaped_pit():
    pdf, y = gaussian_toy(5000, 0.1, 0.03)
    pit = cdf_at(pdf, GRID, y)
    counts = np.histogram(pit, bins=10, range=(0, 1))[0]
    assert counts[0] > 3 * counts[4] and counts[-1] > 3 * counts[5]      # U-shaped
    m = density_metrics(pdf, GRID, y)
    assert m["pit_ks"] > 0.25 and m["coverage_68"] < 0.35 and m["pit_outlier_rate"] > 0.1


def test_crps_of_a_point_mass_is_the_absolute_error():
    pdf = np.zeros((6, GRID.n_bins))
    pdf[:, 250] = 1.0 / GRID.width          # all the mass in one bin [a, b] of width h centred at c
    h, c = GRID.width, GRID.centres[250]
    a, b = c - h / 2, c + h / 2
    y = np.array([c + 0.7, c - 1.1, 5.0, -3.0, c, a + 0.25 * h])   # two off the grid, two inside the bin
    # CRPS = E|X - y| - E|X - X'| / 2 for X, X' uniform on the bin: E|X - X'| = h / 3, and E|X - y| is
    # |c - y| outside the bin, ((y - a)^2 + (b - y)^2) / 2h inside it.
    inside = (y >= a) & (y <= b)
    distance = np.where(inside, ((y - a) ** 2 + (b - y) ** 2) / (2 * h), np.abs(c - y))
    np.testing.assert_allclose(crps(pdf, GRID, y), distance - h / 6, atol=1e-12)


def gaussian_crps(mu: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Closed form (Gneiting & Raftery 2007) of the CRPS of N(mu, s^2) at y."""
    z = (y - mu) / s
    return s * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


def test_crps_of_a_gaussian_matches_the_closed_form():
    rng = np.random.default_rng(1)
    mu, s = rng.uniform(-0.5, 0.5, 300), rng.uniform(0.05, 0.2, 300)
    y = mu + s * rng.normal(0, 1.5, 300)
    pdf = gaussian_densities(mu, s, GRID)         # the Gaussian's mass in each bin: its CDF exact at the edges
    # Between edges the grid CDF is the chord of the true one: the gap integrates to h^2 / 12 times the
    # integral of |f'|, 2 f(mu), i.e. h^2 / (6 sqrt(2 pi) s); the CRPS moves by at most twice that (the
    # mass off the grid, past 7.5 s, is below 1e-13).
    bound = GRID.width ** 2 / (3 * np.sqrt(2 * np.pi) * s)
    error = np.abs(crps(pdf, GRID, y) - gaussian_crps(mu, s, y))
    assert (error <= bound).all()
    # at the mean, z = 0: s (sqrt(2) - 1) / sqrt(pi)
    assert (np.abs(crps(pdf, GRID, mu) - s * (np.sqrt(2) - 1) / np.sqrt(np.pi)) <= bound).all()


def test_w1_to_uniform_matches_scipy():
    rng = np.random.default_rng(2)
    pit = rng.beta(2.0, 5.0, 20000)
    counts = np.histogram(pit, bins=200, range=(0, 1))[0]
    expected = stats.wasserstein_distance(pit, np.linspace(0, 1, 20001))
    assert w1_to_uniform(counts) == pytest.approx(expected, abs=2e-3)
    assert w1_to_uniform(np.ones(20)) == pytest.approx(0.0)
    # all in the first of 10 bins: F - u = 9u on [0, 0.1], then 1 - u: 0.045 + 0.405
    assert w1_to_uniform(np.eye(10)[0]) == pytest.approx(0.45, rel=1e-12)


def test_harmonic_mean_combination():
    grid = Grid(0.0, 1.0, 4)
    p = np.array([[2.0, 1.0, 1.0, 0.0], [1.0, 1.0, 2.0, 0.0]])
    combined = harmonic_mean(p, grid, floor=1e-3)
    raw = 2 / (1 / np.maximum(p, 1e-3)).sum(axis=0)          # n / sum 1/p_i before renormalising
    np.testing.assert_allclose(combined, raw / (raw.sum() * grid.width))
    assert combined[3] < 1e-2                                  # a zero in any member keeps the bin near zero
    same = gaussian_densities(np.array([0.3]), np.array([0.05]), GRID)
    # the floor (2.5e-4, 0.1 % of the mass) is all that changes
    np.testing.assert_allclose(harmonic_mean(np.stack([same, same, same]), GRID), same, rtol=2e-3, atol=3e-4)
    # Two members that disagree: the harmonic mean sits between them and is narrower than their mixture.
    a, b = (gaussian_densities(np.array([m]), np.array([0.1]), GRID) for m in (-0.1, 0.1))
    mean, std = moments(harmonic_mean(np.stack([a, b]), GRID), GRID)
    assert abs(mean[0]) < 1e-6 and std[0] < moments(0.5 * (a + b), GRID)[1][0]


def test_histogram_densities_and_resampling_keep_the_mass():
    values = np.array([[0.0, 0.0, 0.5, 1.5], [-1.0, -1.0, -1.0, 3.0]])
    pdf = histogram_densities(values, None, GRID)
    np.testing.assert_allclose(pdf.sum(axis=1) * GRID.width, 1.0)
    assert cdf_at(pdf, GRID, np.array([0.25, 0.0]))[0] == pytest.approx(0.5, abs=0.01)
    coarse = resample(pdf, GRID, Grid(-2.0, 2.0, 40))
    np.testing.assert_allclose(coarse.sum(axis=1) * 0.1, 1.0)
    np.testing.assert_allclose(moments(coarse, Grid(-2.0, 2.0, 40))[0], moments(pdf, GRID)[0], atol=0.05)


def test_density_file_round_trip_and_bad_file(tmp_path):
    pdf, _ = gaussian_toy(5, 0.1, 0.1)
    write_densities(tmp_path / "d.h5", np.arange(5) + 100, pdf, GRID, target="z")
    ids, back, grid = read_densities(tmp_path / "d.h5")
    assert list(ids) == [100, 101, 102, 103, 104] and grid == GRID
    np.testing.assert_allclose(back, pdf, rtol=1e-6, atol=1e-30)   # stored as float32
    # both splits in one file, the raw densities beside the served ones, string ids as catalogues have them
    raw, _ = gaussian_toy(5, 0.1, 0.05)
    write_densities(tmp_path / "s.h5", np.array([f"gal{i:05d}" for i in range(5)]), pdf, GRID,
                    splits=np.array(["val", "val", "test", "test", "test"]), raw=raw)
    ids, back, _ = read_densities(tmp_path / "s.h5", split="test")
    assert list(ids) == ["gal00002", "gal00003", "gal00004"]
    np.testing.assert_allclose(back, pdf[2:], rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(read_densities(tmp_path / "s.h5", split="val", raw=True)[1], raw[:2], rtol=1e-6,
                               atol=1e-30)
    np.testing.assert_allclose(read_densities(tmp_path / "d.h5", raw=True)[1], pdf,
                               rtol=1e-6, atol=1e-30)   # no raw densities stored: they are the served ones
    with pytest.raises(GalaxypropError, match="no 'split' dataset"):
        read_densities(tmp_path / "d.h5", split="test")
    (tmp_path / "bad.h5").write_text("not hdf5")
    with pytest.raises(GalaxypropError, match="bad.h5"):
        read_densities(tmp_path / "bad.h5")
    with pytest.raises(GalaxypropError, match="n_bins"):
        Grid.from_params({"low": 0, "high": 1})


def test_density_findings_judge_clap_against_the_other_heads():
    from galaxyprop.evaluation.comparison import density_findings

    base = {"pit_cvm": 0.1, "pit_outlier_rate": 0.0, "crps": 0.02, "coverage_95": 0.95}
    metrics = {"clap": {**base, "pit_ks": 0.015, "pit_w1": 0.005, "coverage_68": 0.70, "sigma_mad": 0.0385},
               "knn": {**base, "pit_ks": 0.020, "pit_w1": 0.004, "coverage_68": 0.66, "sigma_mad": 0.0390},
               "gbt": {"sigma_mad": 0.0340},
               "mlp@photometry": {**base, "pit_ks": 0.3, "pit_w1": 0.2, "coverage_68": 0.2, "sigma_mad": 0.02}}
    inputs = {"clap": "image", "knn": "image", "gbt": "image", "mlp@photometry": "photometry"}
    (line,) = density_findings(metrics, inputs, "z")
    assert "pit_ks 0.015, below every other head's (best: `knn` 0.02)" in line
    assert "pit_w1 0.005, NOT below every other head's (best: `knn` 0.004)" in line
    assert "68 % coverage 70.0 % (within ±3 points)" in line
    # the best point head on image inputs is gbt (photometry's mlp is not a fair rival): +13.2 %
    assert "`gbt` 0.034 (+13.2 %, BEYOND 10 %)" in line


def test_quantiles_invert_the_cdf():
    """Quantiles of Gaussians on a fine grid are the normal's; on any density, CDF(quantile) = p."""
    grid = Grid(-1.0, 2.0, 600)
    mean, sigma = np.array([0.2, 0.9]), np.array([0.05, 0.2])
    levels = np.array([0.16, 0.5, 0.84])
    got = quantiles(gaussian_densities(mean, sigma, grid), grid, levels)
    np.testing.assert_allclose(got, stats.norm.ppf(levels[None, :], mean[:, None], sigma[:, None]), atol=2e-4)
    lumpy = normalise(np.random.default_rng(1).uniform(0, 1, (5, 600)) ** 4, grid)
    at = quantiles(lumpy, grid, levels)
    for j, p in enumerate(levels):
        np.testing.assert_allclose(cdf_at(lumpy, grid, at[:, j]), p, atol=1e-9)


def test_text_ids_survive_a_qp_file(tmp_path):
    """A catalogue's string ids (pandas object arrays, which qp's HDF5 writer drops) are written as text."""
    import qp

    from galaxyprop.evaluation.densities import Grid, gaussian_densities, to_qp

    grid = Grid(0.0, 1.0, 50)
    pdf = gaussian_densities(np.array([0.3, 0.5]), np.array([0.05, 0.05]), grid)
    to_qp(pdf, grid, {"TARGETID": np.array(["gal1", "gal22"], dtype=object)}).write_to(str(tmp_path / "ids.hdf5"))
    assert list(qp.read(str(tmp_path / "ids.hdf5")).ancil["TARGETID"]) == ["gal1", "gal22"]


def test_densities_round_trip_through_qp_and_qp_reads_ours():
    """Our densities as a qp histogram ensemble and back are the same numbers; qp's own CDF at the
    truth is our PIT; an ensemble qp made in another parameterisation (quantiles) comes back on our grid."""
    import qp

    from galaxyprop.evaluation.densities import Grid, cdf_at, from_qp, gaussian_densities, to_qp

    grid = Grid(0.0, 1.0, 100)
    pdf = gaussian_densities(np.array([0.3, 0.5, 0.72]), np.array([0.05, 0.1, 0.02]), grid)
    ensemble = to_qp(pdf, grid, {"id": np.array(["a", "b", "c"])})
    assert ensemble.npdf == 3 and list(ensemble.ancil["id"]) == ["a", "b", "c"]
    np.testing.assert_allclose(from_qp(ensemble, grid), pdf, rtol=1e-9, atol=1e-12)
    truth = np.array([0.31, 0.4, 0.9])
    np.testing.assert_allclose(np.diag(ensemble.cdf(truth)), cdf_at(pdf, grid, truth), atol=1e-9)
    levels = np.linspace(0.01, 0.99, 99)
    quantile_form = qp.Ensemble(qp.quant, data={"quants": levels, "locs": ensemble.ppf(levels)})
    back = from_qp(quantile_form, grid)
    mean = (back * grid.centres).sum(axis=1) * grid.width
    np.testing.assert_allclose(mean, [0.3, 0.5, 0.72], atol=0.01)


def test_pit_statistics_agree_with_qps_on_the_same_densities():
    """qp's PIT (LSST DESC's implementation) of our densities as a qp ensemble: the same KS and CvM
    statistics and outlier rate as ours, on densities a little too narrow for their truths."""
    import qp

    from galaxyprop.evaluation.densities import Grid, gaussian_densities, to_qp
    from galaxyprop.evaluation.metrics import density_metrics

    rng = np.random.default_rng(3)
    grid = Grid(-1.0, 2.0, 300)
    mean = rng.uniform(0.2, 0.8, 2000)
    truth = mean + rng.normal(0.0, 0.06, 2000)
    pdf = gaussian_densities(mean, np.full(2000, 0.05), grid)
    ours = density_metrics(pdf, grid, truth)
    pit = qp.metrics.PIT(to_qp(pdf, grid), truth)
    assert ours["pit_ks"] == pytest.approx(pit.evaluate_PIT_KS().statistic, abs=2e-3)
    assert ours["pit_cvm"] == pytest.approx(pit.evaluate_PIT_CvM().statistic, rel=0.02)
    assert ours["pit_ks"] > 0.05            # too narrow, and both see it
