"""LSST DESC RAIL's photo-z estimators behind galaxyprop's `Head`: one adapter for every informer/estimator
pair (FlexZBoost, GPz, DNF, CMNN, RAIL's KNN), so they tune, calibrate, register and serve like any head.

`fit` runs the RAIL informer on the training features, `predict_pdf` turns the estimator's `qp.Ensemble`
into densities on the target's grid (`evaluation.densities.from_qp`: any qp parameterisation), and
`predict` gives their mean and standard deviation. The target need not be a redshift: RAIL's estimators
only call it `redshift`, and its range is the target's grid.

What the adapter decides, and why:
- **Independent coordinates.** galaxyprop gives a head a feature matrix (magnitudes and colours, sep
  measurements or embeddings), standardised here on the training split. Photometry features are
  magnitudes and their colours, linearly dependent, and estimators that fit in magnitude space break on a
  singular design (on SDSS, DNF's local linear fits gave spreads of ~300 in z and flat densities, GPz flat
  densities too). So the standardised features are written in an orthonormal basis of the space they span
  (`span_basis`): a rotation of that space, so no information is lost and Euclidean distances are kept.
- **Coordinates as bands.** RAIL's estimators read magnitudes per band and most form colours of adjacent
  bands themselves (FlexZBoost and KNN: the colours and one reference band; CMNN: the colours alone).
  Estimators that take colours are handed the running sums of the coordinates as their bands (band 0 is
  0, band k the sum of the first k), so the adjacent colours they form are exactly the coordinates
  (negated) and nothing is lost or mixed; estimators that take magnitudes (GPz, DNF) are handed the
  coordinates themselves.
- **Errors.** A feature matrix carries no per-galaxy errors, and GPz, DNF and CMNN weigh by them; every
  band gets the same error, `feature_error` (in standard deviations of the feature), a hyperparameter
  that Optuna tunes like any other.
- **No non-detections here.** The features are finite by the time a head sees them (non-detections are a
  matter of the catalogue reader), so RAIL's `nondetect_val` is NaN and its magnitude limits unbounded.

Any other option of the RAIL stages is passed through by name (`heads.rail_<name>.fixed` / `.search`):
e.g. FlexZBoost's `max_basis`, `nbump`, `nsharp`; DNF's `selection_mode`; CMNN's `min_n`.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid, from_qp, moments
from galaxyprop.features.scaling import make_scaler
from galaxyprop.heads.base import Head, Prediction, check_features, check_fit_inputs

#: The extra that installs every RAIL estimator galaxyprop runs.
EXTRA = "pip install 'galaxyprop[rail]'"
#: RAIL stages' settings the adapter sets itself (a head's options may not name them).
ADAPTER_SETTINGS = ("bands", "err_bands", "ref_band", "redshift_col", "nondetect_val", "mag_limits", "zmin", "zmax",
                    "nzbins", "hdf5_groupname", "replace_error_vals", "model", "output_mode", "name")


class RailHead(Head):
    """A RAIL informer/estimator pair; subclasses name it (`module`, `stem`) and its package."""

    gives_density = True
    needs_grid = True
    #: RAIL's module holding the pair, and the stem of its `<stem>Informer` / `<stem>Estimator` classes
    module: ClassVar[str]
    stem: ClassVar[str]
    package: ClassVar[str]
    #: whether the estimator forms colours of adjacent bands itself (then it is given the running sums)
    takes_colours: ClassVar[bool] = True

    def __init__(self, *, grid: Grid | Mapping | None = None, feature_error: float = 0.05, seed: int = 0, **options):
        clash = sorted(set(options) & set(ADAPTER_SETTINGS))
        if clash:
            raise GalaxypropError(f"head '{self.name}': {clash} are set by galaxyprop's RAIL adapter, not by params")
        self.grid = Grid.from_params(grid) if isinstance(grid, Mapping) else grid   # params' {low, high, n_bins}
        self.feature_error = feature_error
        self.seed = seed
        self.options = dict(options)

    def get_params(self) -> dict:
        return {"grid": self.grid, "feature_error": self.feature_error, "seed": self.seed, **self.options}

    # -- RAIL's side -------------------------------------------------------------------------------------
    def _stage_classes(self) -> tuple[type, type]:
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            raise GalaxypropError(f"head '{self.name}' needs RAIL's {self.stem} ({self.package}): {EXTRA}") from None
        return getattr(module, f"{self.stem}Informer"), getattr(module, f"{self.stem}Estimator")

    def _bands(self) -> list[str]:
        n = self.basis_.shape[1]
        return [f"b{k}" for k in range(n + 1 if self.takes_colours else n)]

    def _settings(self, cls: type) -> dict:
        """What the adapter sets on a RAIL stage of class `cls`, with the head's options (each stage is
        given the ones it takes)."""
        bands = self._bands()
        grid = self.grid
        settings = {"bands": bands, "err_bands": [f"{b}_err" for b in bands], "redshift_col": "redshift",
                    "ref_band": bands[1] if self.takes_colours else bands[0], "nondetect_val": np.nan,
                    "mag_limits": {b: np.inf for b in bands}, "hdf5_groupname": "",
                    "replace_error_vals": [self.feature_error] * len(bands), "seed": self.seed,
                    "zmin": float(grid.edges[0]), "zmax": float(grid.edges[-1]), "nzbins": grid.n_bins,
                    **self.options}
        return {k: v for k, v in settings.items() if k in cls.config_options}

    def _check_options(self) -> None:
        informer, estimator = self._stage_classes()
        unknown = sorted(set(self.options) - set(informer.config_options) - set(estimator.config_options))
        if unknown:
            raise GalaxypropError(f"head '{self.name}': RAIL's {self.stem} has no option {unknown}")

    def _table(self, X: np.ndarray, y: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The standardised features as RAIL's table of bands and errors (see the module docstring)."""
        scaled = self.scaler_.transform(X).astype(float) @ self.basis_
        if self.takes_colours:
            scaled = np.hstack([np.zeros((len(X), 1)), np.cumsum(scaled, axis=1)])
        table = {}
        for k, band in enumerate(self._bands()):
            table[band] = scaled[:, k]
            table[f"{band}_err"] = np.full(len(X), float(self.feature_error))
        if y is not None:
            table["redshift"] = np.asarray(y, dtype=float)
        return table

    def _stage(self, cls: type, **extra):
        with _quiet_stdout(self.name):
            stage = cls.make_stage(name=f"{self.name}_{cls.__name__}", **self._settings(cls), **extra)
        stage.log = _QUIET     # RAIL reports every data-store insertion on stdout
        return stage

    # -- galaxyprop's side -------------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
            callbacks: Sequence = ()) -> RailHead:
        """Run the RAIL informer on (X, y); `validation` and `callbacks` are not used (RAIL's informers split
        their own training data where they tune internally)."""
        if self.grid is None:
            raise GalaxypropError(f"head '{self.name}' needs the target's grid")
        X, y = check_fit_inputs(X, y)
        self.n_features_ = X.shape[1]
        self._check_options()
        self.scaler_ = make_scaler("standard").fit(X)
        self.basis_ = span_basis(self.scaler_.transform(X).astype(float))
        informer, _ = self._stage_classes()
        stage = self._stage(informer, output_mode="return")    # RAIL would write model_<name>.pkl into the cwd
        # some informers draw from numpy's global generator (GPz its train/validation split): seeded here,
        # and the caller's state put back
        state = np.random.get_state()  # noqa: NPY002 (the legacy global generator RAIL uses)
        np.random.seed(self.seed)  # noqa: NPY002
        try:
            with _quiet_stdout(self.name):
                stage.inform(self._table(X, y))
        finally:
            np.random.set_state(state)  # noqa: NPY002
        self.model_ = self.settle(stage.model)
        return self

    def settle(self, model):
        """The informer's model as the head keeps it (an estimator whose model records something that is
        not learnt, such as a timing, clears it here so that a seeded refit is the same file)."""
        return model

    def ensemble(self, X: np.ndarray):
        """The estimator's `qp.Ensemble` for features `X`."""
        X = check_features(X, self.n_features_)
        _, estimator = self._stage_classes()
        # a copy: some estimators' models change as they answer (scikit-learn's KD-tree counts its queries),
        # and a head's file must not depend on what it was asked
        stage = self._stage(estimator, model=copy.deepcopy(self.model_), output_mode="return")
        with _quiet_stdout(self.name):
            return stage.estimate(self._table(X)).data

    def predict_pdf(self, X: np.ndarray, grid: Grid) -> np.ndarray:
        return from_qp(self.ensemble(X), grid)

    def predict_with_pdf(self, X: np.ndarray, grid: Grid) -> tuple[Prediction, np.ndarray]:
        pdf = self.predict_pdf(X, grid)
        return Prediction(*moments(pdf, grid)), pdf

    def predict(self, X: np.ndarray) -> Prediction:
        """The mean and standard deviation of the estimator's density on the head's grid."""
        return self.predict_with_pdf(X, self.grid)[0]


def span_basis(scaled: np.ndarray, tolerance: float = 1e-6) -> np.ndarray:
    """(d, r) orthonormal columns spanning the rows of `scaled` (n, d), without the directions in which they
    do not vary (singular values below `tolerance` times the largest): exactly collinear features drop out.
    Signs are fixed (each column's largest entry positive) so that a refit gives the same basis."""
    _, singular, vt = np.linalg.svd(scaled, full_matrices=False)
    basis = vt[singular > tolerance * singular.max()].T
    return basis * np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(basis.shape[1])])


class _Quiet:
    """A logger that drops RAIL's info messages and passes warnings and errors to the standard logger."""

    _log = logging.getLogger("galaxyprop.heads.rail")

    def __getattr__(self, level: str):
        if level in ("warning", "error", "critical", "exception"):
            return getattr(self._log, level)
        return lambda *args, **kwargs: None


_QUIET = _Quiet()


@contextlib.contextmanager
def _quiet_stdout(name: str):
    """RAIL's estimators print their progress (GPz an iteration table per fit): kept at DEBUG level."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    if buffer.getvalue():
        _Quiet._log.debug("%s: %s", name, buffer.getvalue())
