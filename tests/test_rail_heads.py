"""LSST DESC RAIL's estimators as galaxyprop heads (heads.rail_adapter), beyond the contract every head keeps
(test_head_contract): the adapter hands the estimators exactly galaxyprop's features, a RAIL head on real SDSS
photometry registers, loads through MLflow's pyfunc and answers as it did before, and the mistakes a user can
make are one line each."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from galaxyprop.data.catalog import CatalogSpec, read_catalog
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid, cdf_at, from_qp, to_qp
from galaxyprop.evaluation.metrics import crps, target_metrics
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.heads import FEATURE_HEADS, head_class, make_head
from galaxyprop.heads.rail_adapter import span_basis
from galaxyprop.registry import versions as registry
from galaxyprop.registry.predictor import Predictor
from galaxyprop.tracking import runs as tracking

from conftest import gst_path, sdss_data

RAIL_HEADS = sorted(h for h in FEATURE_HEADS if h.startswith("rail_"))
GRID = Grid(0.0, 0.4, 80)


@pytest.fixture(scope="module")
def sdss(params):
    """1,200 real SDSS galaxies (kcorrect's file): 900 to fit, 300 to test, as ugriz magnitudes and colours."""
    frame, _ = read_catalog(gst_path(), CatalogSpec.from_params(sdss_data(params)), max_rows=1200, seed=0)
    frame = frame[frame["z"] < GRID.high].reset_index(drop=True)
    photometry = PhotometryFeatures()
    X, y = photometry.transform(frame), frame["z"].to_numpy()
    return photometry, frame, X[:900], y[:900], X[900:], y[900:]


def test_every_estimator_the_issue_names_is_a_head():
    assert RAIL_HEADS == ["rail_cmnn", "rail_dnf", "rail_flexzboost", "rail_gpz", "rail_knn"]
    assert {head_class(h).package for h in RAIL_HEADS} == {"pz-rail-cmnn", "pz-rail-dnf", "pz-rail-flexzboost",
                                                            "pz-rail-gpz-v1", "pz-rail-sklearn"}


def test_estimators_that_form_colours_are_given_exactly_the_features():
    """The running sums as bands: the adjacent colours RAIL forms are the standardised features, negated."""
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, (50, 4)).astype(np.float32)
    for name, takes_colours in (("rail_cmnn", True), ("rail_dnf", False)):
        head = make_head(name, grid=GRID, feature_error=0.2)
        head.scaler_ = StandardScaler().fit(X)
        head.basis_ = np.eye(X.shape[1])
        table = head._table(X)
        bands = head._bands()
        values = np.column_stack([table[b] for b in bands])
        scaled = head.scaler_.transform(X)
        if takes_colours:
            np.testing.assert_allclose(values[:, :-1] - values[:, 1:], -scaled, atol=1e-12)
        else:
            np.testing.assert_allclose(values, scaled, atol=1e-12)
        assert all((table[f"{b}_err"] == 0.2).all() for b in bands)


def test_collinear_features_are_rotated_into_the_space_they_span():
    """Magnitudes and their colours are linearly dependent: the basis drops the dependent directions and
    keeps every distance between galaxies."""
    rng = np.random.default_rng(1)
    mags = rng.normal(0, 1, (200, 4))
    X = np.hstack([mags, mags[:, :-1] - mags[:, 1:]])          # 7 features spanning 4 dimensions
    basis = span_basis(X)
    assert basis.shape == (7, 4)
    np.testing.assert_allclose(basis.T @ basis, np.eye(4), atol=1e-12)
    rotated = X @ basis
    np.testing.assert_allclose(np.linalg.norm(rotated[:50, None] - rotated[None, :50], axis=-1),
                               np.linalg.norm(X[:50, None] - X[None, :50], axis=-1), atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("name", RAIL_HEADS)
def test_a_rail_head_learns_real_photo_z_and_its_densities_survive_qp(sdss, name, tmp_path, monkeypatch):
    """On real SDSS ugriz: far better than the training redshifts' histogram given to every galaxy, and
    the densities through a qp ensemble and back give the same PITs and CRPS; RAIL writes no file."""
    monkeypatch.chdir(tmp_path)
    _, _, X, y, X_test, y_test = sdss
    options = {"rail_flexzboost": {"max_basis": 20, "nbump": 5, "nsharp": 5},
               "rail_gpz": {"n_basis": 30, "max_iter": 100}}.get(name, {})
    head = make_head(name, grid=GRID, seed=0, **options).fit(X, y)
    prediction, pdf = head.predict_with_pdf(X_test, GRID)
    sigma_mad = target_metrics("z", y_test, prediction.value, 0.05)["sigma_mad"]
    median = target_metrics("z", y_test, np.full(len(y_test), np.median(y)), 0.05)["sigma_mad"]
    assert sigma_mad < 0.035 and sigma_mad < 0.5 * median            # the median predictor's is ~0.07 here
    constant = np.repeat(np.histogram(y, GRID.edges, density=True)[0][None], len(y_test), axis=0)
    assert crps(pdf, GRID, y_test).mean() < 0.6 * crps(constant, GRID, y_test).mean()
    assert not list(tmp_path.iterdir())                 # no model_<stage>.pkl or inprogress_* left behind
    back = from_qp(to_qp(pdf, GRID), GRID)
    np.testing.assert_allclose(cdf_at(back, GRID, y_test), cdf_at(pdf, GRID, y_test), atol=1e-9)
    np.testing.assert_allclose(crps(back, GRID, y_test), crps(pdf, GRID, y_test), atol=1e-9)


@pytest.mark.slow
def test_a_registered_rail_head_answers_through_mlflow_as_before(sdss, store):
    """Registered with the RAIL extra's requirements, loaded through mlflow.pyfunc: the same answers."""
    photometry, frame, X, y, X_test, _ = sdss
    head = make_head("rail_knn", grid=GRID, seed=0).fit(X[:600], y[:600])
    predictor = Predictor("z", photometry, head, GRID)
    predictor.record_support(X[:600], y[:600])
    predictor.calibrate(X[600:], y[600:])
    test = frame.iloc[900:].reset_index(drop=True)
    with tracking.stage_run(store, "register"):
        version = registry.register_predictor(predictor, test.head(5), {"head": "rail_knn"}, {})
    uri = f"models:/galaxyprop-z-catalogue/{version}"
    served = mlflow.pyfunc.load_model(uri).predict(test)
    direct = predictor.predict(test[predictor.input_columns])
    np.testing.assert_allclose(served["prediction"], direct["prediction"], rtol=1e-6)
    requirements = mlflow.pyfunc.get_model_dependencies(uri)
    with open(requirements) as file:
        assert "pz-rail-sklearn==2.0.3" in file.read().split()


def test_what_a_user_can_get_wrong_is_one_line(monkeypatch):
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.linspace(0.05, 0.35, 40)
    cases = {
        "an option RAIL's stage does not have": (lambda: make_head("rail_cmnn", grid=GRID, max_depth=3).fit(X, y),
                                                 "RAIL's CMNN has no option \\['max_depth'\\]"),
        "a setting the adapter owns": (lambda: make_head("rail_knn", grid=GRID, bands=["u"]),
                                       "set by galaxyprop's RAIL adapter"),
        "no grid": (lambda: make_head("rail_knn").fit(X, y), "needs the target's grid"),
    }
    for what, (call, message) in cases.items():
        with pytest.raises(GalaxypropError, match=message) as error:
            call()
        assert "\n" not in str(error.value), what
    # the estimator's package missing: which extra to install
    monkeypatch.setattr(head_class("rail_gpz"), "module", "rail.estimation.algos.not_installed")
    with pytest.raises(GalaxypropError, match=r"needs RAIL's GPz \(pz-rail-gpz-v1\): pip install 'galaxyprop\[rail\]'"):
        make_head("rail_gpz", grid=GRID).fit(X, y)
