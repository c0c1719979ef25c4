"""What a registered model holds: the feature encoder, the fitted head and its calibration, for one target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from scipy.special import ndtr

from galaxyprop.calibration import CalibrationResult, CalibrationSettings, Calibrator, fit_calibration
from galaxyprop.data import schema
from galaxyprop.data.io import load_object, save_object
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid, gaussian_densities, quantiles, resample
from galaxyprop.features.support import SUPPORT_COLUMNS, Support, fit_support
from galaxyprop.heads.base import Head, Prediction

#: The served quantiles: the 2.3/15.9/50/84.1/97.7 % points of the calibrated CDF, so that [q16, q84]
#: is the central 68.3 % interval and [q02, q98] the central 95.4 % one (1 and 2 sigma for a Gaussian).
QUANTILES = (float(ndtr(-2.0)), float(ndtr(-1.0)), 0.5, float(ndtr(1.0)), float(ndtr(2.0)))
QUANTILE_COLUMNS = ["q02", "q16", "q50", "q84", "q98"]
DENSITY_COLUMN = "density"
#: What each served column is (in the registered model's metadata and docs/models.md).
OUTPUT_COLUMNS = {
    "prediction": "the head's point estimate (MC-dropout, ensemble, neighbour or GBT mean), not changed by calibration",
    "spread": "(q84 - q16) / 2 of the calibrated CDF: the 1-sigma-equivalent half width",
    "q02": "2.275 % point of the calibrated CDF (lower end of the central 95.45 % interval)",
    "q16": "15.87 % point of the calibrated CDF (lower end of the central 68.27 % interval)",
    "q50": "median of the calibrated CDF",
    "q84": "84.13 % point of the calibrated CDF (upper end of the central 68.27 % interval)",
    "q98": "97.725 % point of the calibrated CDF (upper end of the central 95.45 % interval)",
    **SUPPORT_COLUMNS,
    DENSITY_COLUMN: "calibrated probability density per unit target on the target's grid (float32, one per bin)",
}
FIELD_PARAM = "photsys"     # the pyfunc parameter (and optional catalogue column) naming the survey field


class FeatureEncoder(Protocol):
    """Turns what a user has into a head's feature matrix: catalogue photometry (a frame), image
    cutouts or spectra (arrays), or precomputed embeddings."""

    input_kind: str
    names: list[str]

    def transform(self, inputs) -> np.ndarray: ...


Fields = str | Sequence[str] | np.ndarray | None


@dataclass
class Predictor:
    """`calibration` (fitted on the validation split) turns the head's densities into the served ones;
    None: the head is served uncalibrated (`calibration_report` says why)."""

    target: str
    features: FeatureEncoder
    head: Head
    grid: Grid                   # the target's density grid: the density column's bins
    calibration: Calibrator | None = None
    calibration_report: dict = field(default_factory=dict)
    support: Support | None = None   # where the training galaxies lie (None: `support_report` says why)
    support_report: str = "not recorded"

    @property
    def input_kind(self) -> str:
        return self.features.input_kind

    @property
    def input_columns(self) -> list[str]:
        """Catalogue columns the model reads (empty for array inputs)."""
        return list(getattr(self.features, "input_columns", []))

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def calibration_method(self) -> str:
        """How the served densities are calibrated, or `none: <why>`."""
        if self.calibration is not None:
            return self.calibration.method
        return f"none: {self.calibration_report.get('reason', 'not calibrated')}"

    def raw_densities(self, X: np.ndarray, grid: Grid) -> tuple[Prediction, np.ndarray]:
        """The head's point estimate and spread, and its own density on `grid` (a Gaussian of its
        spread for a head without one)."""
        if self.head.gives_density:
            return self.head.predict_with_pdf(X, grid)
        result = self.head.predict(X)
        return result, gaussian_densities(result.value, result.spread, grid)

    def calibrate(self, X_val: np.ndarray, y_val: np.ndarray, fields: Fields = None,
                  settings: CalibrationSettings = CalibrationSettings()) -> CalibrationResult:
        """Fit the calibration on validation inputs and truths (and their survey fields) and keep it;
        the result holds the out-of-fold calibrated validation densities on the calibration grid."""
        grid = settings.grid(self.grid)
        _, pdf = self.raw_densities(X_val, grid)
        result = fit_calibration(pdf, grid, y_val, field_codes(fields, len(pdf)), settings)
        self.calibration, self.calibration_report = result.calibrator, result.report
        return result

    def record_support(self, X_train, y_train) -> None:
        """Keep where the training features and targets lie, so that served answers outside are flagged."""
        self.support = fit_support(X_train, y_train)
        self.support_report = ("recorded" if self.support is not None else
                               "not recorded: its inputs (image tensors or two inputs) have no feature matrix")

    def densities(self, X: np.ndarray, fields: Fields = None) -> tuple[Prediction, np.ndarray, np.ndarray, Grid]:
        """The head's point estimate and spread, its raw densities and the calibrated ones, on the grid
        the calibration works on (the target's grid when uncalibrated: then both are the raw ones)."""
        codes = field_codes(fields, len(X))     # checked even when no calibration reads them
        grid = self.calibration.grid if self.calibration is not None else self.grid
        result, raw = self.raw_densities(X, grid)
        calibrated = raw if self.calibration is None else self.calibration.apply(raw, codes)
        return result, raw, calibrated, grid

    def predict(self, inputs: pd.DataFrame | np.ndarray, fields: Fields = None) -> pd.DataFrame:
        """For every row of `inputs` (as the feature encoder takes them): the head's point estimate
        (`prediction`), the calibrated quantiles q02, q16, q50, q84, q98, `spread` = (q84 - q16) / 2,
        and the calibrated density on the target's grid (float32 per row); where the model recorded its
        training support, `in_support` and `support_distance` (features.support).

        `fields`: the survey field (PHOTSYS N or S) of all rows or of each, which picks a per-field
        calibration where the model has one; a catalogue's PHOTSYS column is used when not given."""
        if fields is None and isinstance(inputs, pd.DataFrame):
            column = next((c for c in inputs.columns if str(c).lower() == FIELD_PARAM), None)
            fields = None if column is None else inputs[column].to_numpy()
        X = self.features.transform(inputs)
        result, _, pdf, grid = self.densities(X, fields)
        levels = quantiles(pdf, grid, np.array(QUANTILES))
        out = pd.DataFrame({"prediction": np.asarray(result.value, float),
                            "spread": (levels[:, 3] - levels[:, 1]) / 2.0,
                            **dict(zip(QUANTILE_COLUMNS, levels.T, strict=True))})
        if self.support is not None:
            distance = self.support.distance(X)
            out["in_support"], out["support_distance"] = distance <= 1.0, distance
        out[DENSITY_COLUMN] = list(resample(pdf, grid, self.grid).astype(np.float32))
        return out

    def __setstate__(self, state: dict) -> None:
        # A predictor saved before calibration existed is served uncalibrated, and says so.
        state.setdefault("calibration", None)
        state.setdefault("calibration_report", {"reason": "saved before galaxyprop calibrated its models"})
        # ... and one saved before the training support was recorded serves no `in_support`, and says so.
        state.setdefault("support", None)
        state.setdefault("support_report", "not recorded: saved before galaxyprop recorded the training support")
        self.__dict__.update(state)

    def save(self, path: str | Path) -> None:
        save_object(self, path)

    @staticmethod
    def load(path: str | Path) -> Predictor:
        return load_object(path, Predictor)


def field_codes(fields: Fields, n_rows: int) -> np.ndarray | None:
    """One PHOTSYS code (N, S) or None per row, from one field for all rows or one per row
    (`N`/`north`, `S`/`south`, any case; empty means unknown: the global calibration)."""
    if fields is None:
        return None
    if isinstance(fields, str):
        fields = [fields] * n_rows
    values = list(fields)
    if len(values) != n_rows:
        raise GalaxypropError(f"{len(values)} survey fields given for {n_rows} rows")
    return np.array([schema.field_code(v, row) for row, v in enumerate(values)], dtype=object)
