"""Heads on problems with known answers and against scikit-learn (what every head must do, save/load
among it: tests/test_head_contract.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsRegressor
from sklearn.preprocessing import StandardScaler

from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid, quantiles
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.heads import make_head
from galaxyprop.heads.kcorrect_baseline import KcorrectHead
from galaxyprop.registry.predictor import Predictor


def linear_problem(n: int = 3000, noise: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = X @ np.array([1.0, -0.5, 0.25, 0.0]) + rng.normal(0, noise, n)
    return X, y


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_knn_matches_scikit_learn(weights):
    X, y = linear_problem()
    ours = make_head("knn", k=15, weights=weights, scaling="standard").fit(X[:2500], y[:2500])
    scaler = StandardScaler().fit(X[:2500])
    theirs = KNeighborsRegressor(n_neighbors=15, weights=weights).fit(scaler.transform(X[:2500]), y[:2500])
    np.testing.assert_allclose(ours.predict(X[2500:]).value, theirs.predict(scaler.transform(X[2500:])), atol=1e-5)


def test_knn_spread_is_neighbour_scatter_and_exact_match_wins():
    X = np.array([[0.0], [1.0], [2.0], [10.0]])
    y = np.array([1.0, 3.0, 5.0, 100.0])
    head = make_head("knn", k=3, weights="uniform", scaling="none").fit(X, y)
    pred = head.predict(np.array([[1.0]]))
    assert pred.value[0] == pytest.approx(3.0)
    assert pred.spread[0] == pytest.approx(np.std([1.0, 3.0, 5.0]))
    weighted = make_head("knn", k=3, weights="distance", scaling="none").fit(X, y)
    assert weighted.predict(np.array([[1.0]])).value[0] == pytest.approx(3.0)  # exact match only


@pytest.mark.slow
def test_gbt_learns_a_linear_target_and_its_spread_follows_the_noise():
    X, y = linear_problem(n=8000, noise=0.0)
    noise = np.where(X[:, 3] > 0, 0.4, 0.05)
    y = y + np.random.default_rng(1).normal(size=len(y)) * noise
    head = make_head("gbt", learning_rate=0.1, max_iter=300, seed=0).fit(X[:5000], y[:5000])
    pred = head.predict(X[6500:])
    test_noise = noise[6500:]
    assert np.sqrt(np.mean((pred.value - y[6500:])[test_noise < 0.1] ** 2)) < 0.15
    noisy, quiet = np.median(pred.spread[test_noise > 0.1]), np.median(pred.spread[test_noise < 0.1])
    assert noisy > 3 * quiet
    assert noisy == pytest.approx(0.4, rel=0.35)
    # its density passes through its quantiles: the 15.9 % and 84.1 % points are 2 spreads apart
    grid = Grid(-6, 6, 1200)
    prediction, pdf = head.predict_with_pdf(X[6500:], grid)
    np.testing.assert_allclose(prediction.value, pred.value)
    low, high = quantiles(pdf, grid, np.array([0.158655, 0.841345])).T
    np.testing.assert_allclose((high - low) / 2, pred.spread, atol=grid.width)
    # quantile regression alone under-covers; calibrated on a validation part, it covers 68 %
    truth = y[6500:]
    raw = ((truth >= low) & (truth <= high)).mean()
    predictor = Predictor("z", FeatureMatrix(), head, Grid(-6, 6, 300))
    predictor.calibrate(X[5000:6500], y[5000:6500])
    served = predictor.predict(X[6500:])
    calibrated = ((truth >= served["q16"]) & (truth <= served["q84"])).mean()
    assert abs(calibrated - 0.6827) <= 0.03 and abs(raw - 0.6827) > abs(calibrated - 0.6827)


class FeatureMatrix:
    """The features are the inputs."""

    input_kind, names = "embeddings", []

    def transform(self, inputs):
        return np.asarray(inputs, np.float32)


def test_bad_head_inputs_are_clear():
    with pytest.raises(GalaxypropError, match="unknown head 'forest'"):
        make_head("forest")
    with pytest.raises(GalaxypropError, match="bad hyperparameters"):
        make_head("knn", neighbours=3)
    X, y = linear_problem(n=100)
    head = make_head("knn", k=5).fit(X, y)
    with pytest.raises(GalaxypropError, match="3 columns, the head was fitted on 4"):
        head.predict(X[:, :3])
    with pytest.raises(GalaxypropError, match="non-finite"):
        make_head("knn").fit(X, np.where(np.arange(100) == 3, np.nan, y))


@pytest.mark.slow
def test_kcorrect_head_gives_the_identity_at_z_01():
    rng = np.random.default_rng(2)
    flux = rng.uniform(50, 500, size=(40, 5)) * np.array([0.2, 0.6, 1.0, 1.3, 1.5])
    frame = pd.DataFrame({f"flux_{b}": flux[:, i] for i, b in enumerate("ugriz")}
                         | {f"flux_ivar_{b}": np.full(40, 1.0) for b in "ugriz"})
    head = KcorrectHead(responses=("sdss_u0", "sdss_g0", "sdss_r0", "sdss_i0", "sdss_z0"), n_mc=3)
    X = KcorrectHead.design_matrix(frame, list("ugriz"), np.full(40, 0.1))
    pred = head.fit(X, None).predict(X)
    np.testing.assert_allclose(pred.value, -2.5 * np.log10(1.1), atol=2e-4)
    assert np.isfinite(pred.spread).all()


def test_predictor_needs_positive_fluxes():
    X, y = linear_problem(n=200)
    encoder = PhotometryFeatures(bands=("g", "r"))
    frame = pd.DataFrame({"flux_g": np.full(200, 10.0), "flux_r": np.linspace(5, 50, 200)})
    predictor = Predictor("z", encoder, make_head("knn", k=5).fit(encoder.transform(frame), y), Grid(-6, 6, 120))
    out = predictor.predict(frame.head(3))
    assert list(out.columns) == ["prediction", "spread", "q02", "q16", "q50", "q84", "q98", "density"]
    assert (out["q02"] <= out["q16"]).all() and (out["q16"] <= out["q50"]).all() and (out["q84"] <= out["q98"]).all()
    np.testing.assert_allclose(out["spread"], (out["q84"] - out["q16"]) / 2)
    with pytest.raises(GalaxypropError, match="row 1: column 'flux_r' must be a positive finite flux"):
        predictor.predict(frame.head(3).assign(flux_r=[1.0, -2.0, 3.0]))
    with pytest.raises(GalaxypropError, match="lacks flux columns \\['flux_g'\\]"):
        predictor.predict(frame.drop(columns="flux_g"))
    # magnitudes and the g-r colour
    features = encoder.transform(frame.head(1))
    np.testing.assert_allclose(features[0], [22.5 - 2.5, 22.5 - 2.5 * np.log10(5), -2.5 + 2.5 * np.log10(5)], rtol=1e-6)


@pytest.mark.slow
def test_kcorrect_baseline_uses_each_fields_filters_and_equals_kcorrect_called_directly():
    import kcorrect.kcorrect
    from astropy.io import fits

    from galaxyprop.data import schema
    from galaxyprop.heads.kcorrect_baseline import kcorrect_by_photsys

    from conftest import gst_path

    data = fits.getdata(gst_path())[:80]
    flux = np.asarray(data["MODELFLUX"], float)[:, [1, 2, 4]]       # SDSS g,r,z fluxes as if DESI's
    ivar = np.asarray(data["MODELFLUX_IVAR"], float)[:, [1, 2, 4]]
    photsys = np.where(np.arange(80) % 3 == 0, "N", "S")
    frame = pd.DataFrame({schema.PHOTSYS: photsys} | {f"flux_{b}": flux[:, i] for i, b in enumerate("grz")}
                         | {f"flux_ivar_{b}": ivar[:, i] for i, b in enumerate("grz")})
    curves = {"N": ["bass_g", "bass_r", "mzls_z"], "S": ["decam_g", "decam_r", "decam_z"]}
    bands = {"bands": ["g", "r", "z"], "label_band": "r",
             "responses": {b: {s: curves[s][i] for s in curves} for i, b in enumerate("grz")}}
    redshift = np.asarray(data["Z"], float)
    value, _ = kcorrect_by_photsys(frame, redshift, bands)
    for system, responses in curves.items():
        rows = photsys == system
        direct = kcorrect.kcorrect.Kcorrect(responses=responses, responses_out=["sdss_r0"],
                                            responses_map=[responses[1]], redshift_range=[0.0, 1.0], nredshift=500)
        coeffs = direct.fit_coeffs(redshift=redshift[rows], maggies=flux[rows] * 1e-9, ivar=ivar[rows] * 1e18)
        expected = direct.kcorrect(redshift=redshift[rows], coeffs=coeffs, band_shift=0.1)[:, 0]
        ok = coeffs.sum(axis=1) > 0
        assert ok.mean() > 0.9
        np.testing.assert_allclose(value[rows][ok], expected[ok], atol=2e-3)
        assert np.isnan(value[rows][~ok]).all()
    # the two fields' filter curves differ enough to matter: the wrong field's curves give other K
    swapped, _ = kcorrect_by_photsys(frame.assign(**{schema.PHOTSYS: np.where(photsys == "N", "S", "N")}),
                                     redshift, bands)
    assert np.nanmax(np.abs(swapped - value)) > 0.01
    with pytest.raises(GalaxypropError, match=r"band\(s\) \['g', 'r', 'z'\] of photometric system 'X'"):
        kcorrect_by_photsys(frame.assign(**{schema.PHOTSYS: "X"}), redshift, bands)


def test_a_gbt_fit_pickles_to_the_same_bytes_on_any_number_of_threads():
    """Its results do not depend on the OpenMP thread count, and neither does its file (dvc.lock's hash)."""
    import pickle

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 4))
    y = X[:, 0] + 0.1 * rng.normal(size=600)
    fits = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            fits.append(pickle.dumps(make_head("gbt", max_iter=20, seed=0).fit(X, y)))
    assert fits[0] == fits[1]


def test_a_gbt_tuning_trial_fits_the_mean_alone_and_finalise_completes_the_full_model():
    """A trial (its `trial_options`) gives the point estimate a point metric scores, and no densities;
    the best trial finalised pickles to the same bytes as a full fit of its hyperparameters."""
    import pickle

    rng = np.random.default_rng(2)
    X = rng.normal(size=(800, 3))
    y = X[:, 0] + 0.2 * rng.normal(size=800)
    full = make_head("gbt", max_iter=30, seed=0).fit(X, y)
    trial = make_head("gbt", max_iter=30, seed=0).fit(X, y, **make_head("gbt").trial_options)
    assert full.density_ready and not trial.density_ready
    np.testing.assert_array_equal(trial.predict(X).value, full.predict(X).value)
    assert np.isnan(trial.predict(X).spread).all()
    with pytest.raises(GalaxypropError, match="without its quantile models"):
        trial.predict_pdf(X, Grid(-4.0, 4.0, 40))
    assert pickle.dumps(trial.finalise(X, y)) == pickle.dumps(full)
