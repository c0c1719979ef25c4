"""The contract every head keeps (heads.base.Head), checked on each head on a tiny learnable problem:
one `fit` signature and keyword-only hyperparameters; a finite value and spread per galaxy; exact
save/load; normalised densities; a seeded refit that gives the same predictions and the same file
(so DVC sees no change); one-line errors for bad inputs; and better than a constant.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pytest
from lightning.pytorch.callbacks import Callback

from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid, histogram_densities
from galaxyprop.evaluation.metrics import crps
from galaxyprop.features.multimodal import ImagesAndFeatures
from galaxyprop.heads import BATCH_DEPENDENT_HEADS, make_head
from galaxyprop.heads.base import Head

GRID = Grid(-3.0, 3.0, 120)
WEIGHTS = np.array([1.0, -0.5, 0.25, 0.0])
KCORRECT_BANDS = ("decam_g", "decam_r", "decam_z")


class Problem(NamedTuple):
    X: np.ndarray
    y: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def take(X, index):
    """Rows of a head's inputs: an array's, or both parts' of a multimodal head's (ImagesAndFeatures)."""
    return X.rows(index) if isinstance(X, ImagesAndFeatures) else X[index]


def split(X, y: np.ndarray, n_train: int, n_val: int) -> Problem:
    cut = n_train + n_val
    return Problem(take(X, slice(n_train)), y[:n_train], take(X, slice(n_train, cut)), y[n_train:cut],
                   take(X, slice(cut, None)), y[cut:])


@functools.cache
def linear() -> Problem:
    """Four features (the last carries nothing), y linear in them plus noise of 0.1 (var(y) 0.45)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (950, 4)).astype(np.float32)
    return split(X, X @ WEIGHTS + rng.normal(0, 0.1, len(X)), 600, 150)


@functools.cache
def other_field() -> np.ndarray:
    """Unlabelled galaxies of another field: the last feature shifted by 2."""
    X = np.random.default_rng(1).uniform(-1, 1, (400, 4)).astype(np.float32)
    X[:, 3] += 2.0
    return X


@functools.cache
def blobs() -> Problem:
    """16x16 g,r,z cutouts of round galaxies on sky noise; the target is the log of their flux."""
    rng = np.random.default_rng(2)
    n = 450
    log_flux = rng.uniform(0.5, 2.0, n)
    yy, xx = np.mgrid[:16, :16] - 7.5
    profile = np.exp(-(xx ** 2 + yy ** 2) / 8.0) / (8.0 * np.pi)
    colours = np.array([0.6, 1.0, 1.4])[None, :, None, None]
    images = 10 ** log_flux[:, None, None, None] * colours * profile + rng.normal(0, 0.05, (n, 3, 16, 16))
    return split(images.astype(np.float32), log_flux, 300, 50)


@functools.cache
def blobs_and_colours() -> Problem:
    """The blobs' cutouts with three catalogue features (a colour and two without information); the
    target is the colour plus the log flux seen in the cutouts."""
    images = blobs()
    rng = np.random.default_rng(4)
    n = len(images.y) + len(images.y_val) + len(images.y_test)
    features = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    y = features[:, 0] + np.concatenate([images.y, images.y_val, images.y_test])
    X = ImagesAndFeatures(np.concatenate([images.X, images.X_val, images.X_test]), features)
    return split(X, y, 300, 50)


@functools.cache
def template_galaxies() -> Problem:
    """Fluxes (2 % noise) of random mixtures of the kcorrect templates at 0.02 < z < 0.35, the true
    K(^{0.1}r) from DECam r as the target: kcorrect's design matrix (fluxes, ivars, z)."""
    from galaxyprop.physics.kcorrect_fit import kcorrect_model

    rng = np.random.default_rng(3)
    model = kcorrect_model(KCORRECT_BANDS, "sdss_r0", "decam_r", 1.0)
    n = 300
    z = rng.uniform(0.02, 0.35, n).astype(np.float32)
    coeffs = rng.uniform(0, 1, (n, 5)) * (rng.uniform(size=(n, 5)) < 0.6)
    coeffs[np.arange(n), rng.integers(0, 5, n)] += 0.5
    coeffs *= (rng.uniform(20, 500, n) / (1e9 * model.reconstruct(redshift=z, coeffs=coeffs)[:, 1]))[:, None]
    flux = 1e9 * model.reconstruct(redshift=z, coeffs=coeffs)
    kcorrection = model.kcorrect(redshift=z, coeffs=coeffs, band_shift=0.1)[:, 0].astype(float)
    noise = 0.02 * flux
    X = np.hstack([flux + noise * rng.normal(size=flux.shape), 1 / noise ** 2, z[:, None]])
    return split(X, kcorrection, 150, 50)


def fewer_features(X: np.ndarray) -> np.ndarray:
    return X[:, :-1]


def with_nan(X: np.ndarray) -> np.ndarray:
    bad = np.array(X, dtype=float)
    bad.reshape(len(bad), -1)[1, 0] = np.nan
    return bad


@dataclass(frozen=True)
class Case:
    make: Callable[[], Head]
    problem: Callable[[], Problem]
    options: Callable[[], dict] = dict             # the head's own keyword-only options of `fit`
    narrow: Callable[[np.ndarray], np.ndarray] = fewer_features   # inputs of the wrong width
    nan: Callable[[np.ndarray], np.ndarray] = with_nan             # inputs with a NaN in row 1
    uses_validation: bool = True                   # early-stops on `validation` (so checks it)


TINY_NET = dict(hidden_layers=1, width=16, dropout=0.05, learning_rate=1e-2, batch_size=64, max_epochs=12,
                patience=12, n_mc=8, seed=0)
CASES = {
    "knn": Case(lambda: make_head("knn", k=10), linear, uses_validation=False),
    "gbt": Case(lambda: make_head("gbt", max_iter=40, min_samples_leaf=10, seed=0), linear, uses_validation=False),
    "mlp": Case(lambda: make_head("mlp", **TINY_NET), linear),
    "cnn": Case(lambda: make_head("cnn", channels=4, crop=12, max_shift=2, hidden_layers=1, width=16, dropout=0.05,
                                  learning_rate=5e-3, batch_size=32, max_epochs=6, patience=6, n_mc=5, seed=0),
                blobs, narrow=lambda images: images[:, :2]),        # two bands, not g,r,z
    # the cutouts carry half the target's variance here: the joint stage learns at the full rate (fine_tune 1)
    "cnn_mm": Case(lambda: make_head("cnn_mm", channels=4, crop=12, max_shift=2, photometry_layers=1,
                                     photometry_width=16, photometry_epochs=10, fine_tune=1.0, hidden_layers=1,
                                     width=16, dropout=0.05, learning_rate=5e-3, batch_size=32, max_epochs=8,
                                     patience=8, n_mc=5, seed=0),
                   blobs_and_colours, narrow=lambda X: ImagesAndFeatures(X.images, fewer_features(X.features)),
                   nan=lambda X: ImagesAndFeatures(X.images, with_nan(X.features))),
    "clap": Case(lambda: make_head("clap", grid={"low": GRID.low, "high": GRID.high, "n_bins": GRID.n_bins},
                                   latent_dim=4, projection_width=16, k_min=8, k_max=64, n_calibration=40,
                                   refit_width=32, learning_rate=5e-3, max_epochs=4, patience=4,
                                   n_realisations=2, seed=0), linear),
    "dann": Case(lambda: _dann(), linear, options=lambda: {"unlabelled": other_field()}),
    # LSST DESC RAIL's estimators through galaxyprop's adapter (heads.rail_adapter)
    "rail_flexzboost": Case(lambda: make_head("rail_flexzboost", grid=GRID, max_basis=10, nbump=3, nsharp=3, seed=0,
                                                      regression_params={"max_depth": 4,
                                                                         "objective": "reg:squarederror"}),
                            linear, uses_validation=False),
    "rail_gpz": Case(lambda: make_head("rail_gpz", grid=GRID, n_basis=20, max_iter=60, seed=0), linear,
                     uses_validation=False),
    "rail_dnf": Case(lambda: make_head("rail_dnf", grid=GRID, selection_mode=1), linear, uses_validation=False),
    "rail_cmnn": Case(lambda: make_head("rail_cmnn", grid=GRID, feature_error=0.1, seed=0), linear,
                      uses_validation=False),
    "rail_knn": Case(lambda: make_head("rail_knn", grid=GRID, sigma_grid_min=0.03, sigma_grid_max=0.3, seed=0), linear,
                     uses_validation=False),
    "kcorrect": Case(lambda: _kcorrect(), template_galaxies, uses_validation=False),
}


def _dann() -> Head:
    from galaxyprop.heads.adversarial import DomainAdversarialHead

    return DomainAdversarialHead(adversary_weight=0.3, discriminator_speed=5.0, **TINY_NET)


def _kcorrect() -> Head:
    from galaxyprop.heads.kcorrect_baseline import KcorrectHead

    return KcorrectHead(responses=KCORRECT_BANDS, response_map="decam_r", n_mc=3, seed=0)


class EpochCount(Callback):
    def __init__(self):
        self.epochs = 0

    def on_train_epoch_end(self, trainer, task) -> None:
        self.epochs += 1


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread for torch and for OpenMP (scikit-learn's boosting): on a busy 2-core machine their
    threads wait on each other and tiny fits run ten times slower."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def fit(case: Case, problem: Problem, **options) -> tuple[Head, int]:
    """A head fitted through the common signature, and how many epochs its callbacks saw."""
    epochs = EpochCount()
    head = case.make().fit(problem.X, problem.y, validation=(problem.X_val, problem.y_val), callbacks=[epochs],
                           **case.options(), **options)
    return head, epochs.epochs


def case_names() -> list:
    """Every case; RAIL's estimators (seconds each, the package of another project) and kcorrect (a template
    fit per galaxy) outside `make test-fast`."""
    return [pytest.param(n, marks=pytest.mark.slow) if n.startswith("rail_") or n == "kcorrect" else n
            for n in sorted(CASES)]


@pytest.fixture(scope="module", params=case_names())
def fitted(request):
    """Two heads of one kind fitted apart with the same hyperparameters and seed, on the same data."""
    case = CASES[request.param]
    problem = case.problem()
    (head, epochs), (again, _) = fit(case, problem), fit(case, problem)
    return case, problem, head, again, epochs


def assert_same_predictions(a: Head, b: Head, X: np.ndarray) -> None:
    for mine, theirs in zip(a.predict(X), b.predict(X)):
        np.testing.assert_array_equal(mine, theirs)
    if a.gives_density:
        np.testing.assert_array_equal(a.predict_pdf(X, GRID), b.predict_pdf(X, GRID))


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_fit_signature_and_keyword_only_hyperparameters(name):
    head = CASES[name].make()
    fit_parameters = inspect.signature(type(head).fit).parameters
    assert list(fit_parameters)[:5] == ["self", "X", "y", "validation", "callbacks"]
    assert {fit_parameters[p].kind for p in ("X", "y")} == {inspect.Parameter.POSITIONAL_OR_KEYWORD}
    assert fit_parameters["validation"].default is None and fit_parameters["callbacks"].default == ()
    # the common options, then the head's own, are all keyword-only
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(fit_parameters.values())[3:])
    assert set(head.trial_options) <= set(fit_parameters)
    finalise = inspect.signature(type(head).finalise).parameters
    assert list(finalise) == ["self", "X", "y", "validation"] and finalise["validation"].kind is inspect.Parameter.KEYWORD_ONLY
    assert not hasattr(head, "fit_tuned")
    init = inspect.signature(type(head).__init__).parameters
    assert all(p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
               for n, p in init.items() if n != "self")
    assert type(head)(**head.get_params()).get_params() == head.get_params()


def test_predictions_have_a_finite_value_and_spread_per_galaxy(fitted):
    case, problem, head, _, epochs = fitted
    X = problem.X_test
    prediction = head.predict(X)
    for part in prediction:
        assert part.shape == (len(X),) and np.isfinite(part).all()
    assert (prediction.spread >= 0).all()
    # a galaxy's value does not depend on the batch it comes in (unless the head says it does, and why)
    alone = head.predict(take(X, slice(5))).value
    if head.name in BATCH_DEPENDENT_HEADS:
        assert not np.allclose(alone, prediction.value[:5], rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(alone, prediction.value[:5], rtol=1e-5, atol=1e-6)
    # the callbacks are Lightning's: heads trained by epoch hand them to their trainer, others ignore them
    assert (epochs > 0) == head.trains_by_epoch


def test_save_and_load_give_exactly_the_same_head(fitted, tmp_path):
    _, problem, head, _, _ = fitted
    head.save(tmp_path / "head.joblib")
    loaded = Head.load(tmp_path / "head.joblib")
    assert type(loaded) is type(head) and loaded.get_params() == head.get_params()
    assert_same_predictions(loaded, head, problem.X_test)


def test_densities_are_normalised_and_non_negative(fitted):
    _, problem, head, _, _ = fitted
    X = problem.X_test
    if not head.gives_density:
        with pytest.raises(GalaxypropError, match="gives no probability density"):
            head.predict_pdf(X, GRID)
        return
    pdf = head.predict_pdf(X, GRID)
    assert pdf.shape == (len(X), GRID.n_bins) and np.isfinite(pdf).all() and (pdf >= 0).all()
    # constant within each bin (densities.py): the exact integral is the sum times the bin width
    np.testing.assert_allclose(pdf.sum(axis=1) * GRID.width, 1.0, rtol=0, atol=1e-9)
    prediction, together = head.predict_with_pdf(X, GRID)
    np.testing.assert_array_equal(together, pdf)
    np.testing.assert_array_equal(prediction.value, head.predict(X).value)
    np.testing.assert_array_equal(prediction.spread, head.predict(X).spread)


def test_a_seeded_refit_gives_the_same_predictions_and_the_same_file(fitted, tmp_path):
    _, problem, head, again, _ = fitted
    assert again is not head
    assert_same_predictions(again, head, problem.X_test)
    head.save(tmp_path / "a.joblib")
    again.save(tmp_path / "b.joblib")
    # equal models in other objects (other memory) give equal files: a rerun leaves DVC's hashes as they were
    assert (tmp_path / "a.joblib").read_bytes() == (tmp_path / "b.joblib").read_bytes()


def test_bad_inputs_raise_one_line_errors(fitted):
    case, p, head, _, _ = fitted
    options = case.options()
    calls = {
        "too few features at predict": lambda: head.predict(case.narrow(p.X_test)),
        "NaN in X at predict": lambda: head.predict(case.nan(p.X_test)),
        "NaN in X at fit": lambda: case.make().fit(case.nan(p.X), p.y, **options),
        "X and y of different lengths": lambda: case.make().fit(p.X, p.y[:-1], **options),
        "non-finite y": lambda: case.make().fit(p.X, np.where(np.arange(len(p.y)) == 3, np.inf, p.y), **options),
    }
    if case.uses_validation:
        calls["validation of different lengths"] = lambda: case.make().fit(
            p.X, p.y, validation=(p.X_val, p.y_val[:-1]), **options)
        calls["validation with NaN"] = lambda: case.make().fit(p.X, p.y, validation=(case.nan(p.X_val), p.y_val),
                                                               **options)
    if "unlabelled" in options:
        calls["NaN in the unlabelled"] = lambda: case.make().fit(p.X, p.y, unlabelled=with_nan(options["unlabelled"]))
        calls["unlabelled too narrow"] = lambda: case.make().fit(p.X, p.y, unlabelled=options["unlabelled"][:, :-1])
    for what, call in calls.items():
        with pytest.raises(GalaxypropError) as error:
            call()
        assert "\n" not in str(error.value), what


def test_better_than_a_constant(fitted):
    """Mean squared error below half the target's variance, and (heads with densities) a CRPS below
    0.75 (about the square root of 1/2: the CRPS scales as an error) of that of the training targets'
    histogram given to every galaxy. (Here the heads reach 0.005-0.23 and 0.18-0.58 of the constant's.)"""
    _, p, head, _, _ = fitted
    assert np.mean((head.predict(p.X_test).value - p.y_test) ** 2) < 0.5 * np.var(p.y_test)
    if head.gives_density:
        constant = np.repeat(histogram_densities(p.y[None], None, GRID), len(p.y_test), axis=0)
        assert crps(head.predict_pdf(p.X_test, GRID), GRID, p.y_test).mean() < 0.75 * crps(constant, GRID, p.y_test).mean()


@pytest.mark.parametrize("name", [n for n in sorted(CASES) if CASES[n].make().trial_options])
def test_a_tuning_trial_finalised_is_the_full_model(name):
    """What the train stage does: a trial fits with `trial_options`, the best trial's head is finalised."""
    case = CASES[name]
    problem = case.problem()
    full, _ = fit(case, problem)
    trial, _ = fit(case, problem, **case.make().trial_options)
    trial.finalise(problem.X, problem.y, validation=(problem.X_val, problem.y_val))
    assert_same_predictions(trial, full, problem.X_test)
