"""Metrics on inputs with known answers, and the stratified split."""

from __future__ import annotations

import numpy as np
import pytest

from galaxyprop.data.splits import stratified_split
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.metrics import (
    is_better,
    objective_value,
    redshift_metrics,
    regression_metrics,
    target_metrics,
)


def test_regression_metrics_known_values():
    y = np.array([0.0, 1.0, 2.0, 3.0])
    pred = np.array([0.0, 1.0, 2.0, 4.0])  # one residual of 1
    m = regression_metrics(y, pred, outlier_threshold=0.5)
    assert m["mse"] == pytest.approx(0.25)
    assert m["rmse"] == pytest.approx(0.5)
    assert m["mae"] == pytest.approx(0.25)
    assert m["r2"] == pytest.approx(1 - 1.0 / 5.0)
    assert m["outlier_rate"] == pytest.approx(0.25)
    assert m["sigma_nmad"] == pytest.approx(0.0)  # median |r - median r| = 0


def test_sigma_nmad_of_gaussian_is_sigma():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200_000)
    assert regression_metrics(y, y + rng.normal(0, 0.3, y.size), 1.0)["sigma_nmad"] == pytest.approx(0.3, rel=0.01)


def test_redshift_metrics_known_values():
    z = np.array([0.1, 0.2, 0.3, 0.4])
    zp = z + np.array([0.011, -0.012, 0.0, 0.14])  # dz = 0.01, -0.01, 0, 0.1
    m = redshift_metrics(z, zp, eta_threshold=0.05)
    assert m["eta"] == pytest.approx(0.25)
    assert m["bias"] == pytest.approx(np.mean([0.01, -0.01, 0.0, 0.1]))
    assert m["bias_median"] == pytest.approx(0.005)
    dz = np.array([0.01, -0.01, 0.0, 0.1])
    assert m["sigma_mad"] == pytest.approx(1.4826 * np.median(np.abs(dz - np.median(dz))))
    assert set(target_metrics("z", z, zp, 0.05)) >= {"r2", "sigma_mad", "eta", "bias", "bias_median"}
    assert "eta" not in target_metrics("kcorr_r01", z, zp, 0.05)


def test_metric_directions():
    assert is_better("r2", 0.9, 0.8) and not is_better("r2", 0.7, 0.8)
    assert is_better("mse", 0.1, 0.2) and not is_better("mse", 0.3, 0.2)
    assert is_better("bias", -0.01, 0.02) and not is_better("bias", -0.03, 0.02)
    assert objective_value("r2", 0.9) < objective_value("r2", 0.8)


def test_split_is_seeded_stratified_and_complete():
    rng = np.random.default_rng(5)
    z = np.concatenate([rng.uniform(0.0, 0.1, 3000), rng.uniform(0.3, 0.6, 1000)])
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    labels = stratified_split(z, fractions, seed=1)
    assert np.array_equal(labels, stratified_split(z, fractions, seed=1))
    assert not np.array_equal(labels, stratified_split(z, fractions, seed=2))
    for name, fraction in fractions.items():
        assert np.mean(labels == name) == pytest.approx(fraction, abs=0.005)
        # each split keeps the 3:1 low/high-z mix
        assert np.mean(z[labels == name] < 0.2) == pytest.approx(0.75, abs=0.01)
    with pytest.raises(GalaxypropError, match="summing to 1"):
        stratified_split(z, {"train": 0.5, "val": 0.2, "test": 0.2}, seed=0)


def test_validation_and_test_have_the_same_fields_and_brightness_within_each_redshift_bin():
    """The split the calibration relies on: within every redshift bin, each field's galaxies are split
    by brightness tercile, so the validation and test splits hold each (field, tercile) in the same
    share; a galaxy with no flux gets a stratum of its own rather than an error."""
    import pandas as pd

    from galaxyprop.data.splits import split_frame

    rng = np.random.default_rng(0)
    n = 6000
    frame = pd.DataFrame({"id": np.arange(n), "z": rng.uniform(0.0, 0.4, n),
                          "photsys": np.where(rng.uniform(size=n) < 0.4, "N", "S"),
                          "flux_r": 10 ** rng.normal(1.0, 0.4, n)})
    frame.loc[7, "flux_r"] = np.nan
    parts = split_frame(frame, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=3)
    assert sum(len(p) for p in parts.values()) == n
    edges = np.quantile(frame["flux_r"].dropna(), [1 / 3, 2 / 3])

    def cells(part):
        tercile = np.searchsorted(edges, part["flux_r"].fillna(0), side="right")
        return pd.crosstab(part["photsys"], tercile)

    val, test = cells(parts["val"]), cells(parts["test"])
    assert (val - test).abs().to_numpy().max() <= 10          # ~150 per cell; rounding per redshift bin
    for part in (parts["val"], parts["test"]):
        north = part[part["photsys"] == "N"]["flux_r"]
        south = part[part["photsys"] == "S"]["flux_r"]
        whole_n, whole_s = (frame[frame["photsys"] == f]["flux_r"].dropna() for f in ("N", "S"))
        assert np.median(north.dropna()) == pytest.approx(np.median(whole_n), rel=0.03)
        assert np.median(south.dropna()) == pytest.approx(np.median(whole_s), rel=0.03)
