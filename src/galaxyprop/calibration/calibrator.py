"""The calibrator a model carries and how it is fitted on the validation split.

`fit_calibration` chooses the kernel width by the cross-validated CRPS of the calibrated densities
(out-of-fold: each fold is calibrated by maps fitted on the other folds), decides per survey field
whether the global map is enough, and fits the final maps on every validation galaxy. The
out-of-fold densities are what the validation metrics report, so that a model's validation
calibration is measured on galaxies its map did not see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from galaxyprop.calibration.checks import OVERALL, calibration_summary, off_by_more_than_noise
from galaxyprop.calibration.probit_map import ProbitMap
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid, from_probit_cdf, normalise, probit_cdf_at_edges, probit_pit
from galaxyprop.evaluation.metrics.density import crps


@dataclass(frozen=True)
class CalibrationSettings:
    """`calibration` in params: the fewest validation rows to fit a map on, the cross-validation folds,
    the kernel widths (in bins of the calibration grid) to choose from, the uniform floor mixed into
    every density, and `refine`: the calibration grid has this many bins per bin of the target's grid
    (a map that widens a density narrower than a bin needs the finer grid to stay unbiased)."""

    min_rows: int = 200
    folds: int = 5
    kernel_bins: tuple[float, ...] = (0.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
    floor: float = 1e-9
    refine: int = 4
    seed: int = 0

    @classmethod
    def from_params(cls, params: Mapping) -> CalibrationSettings:
        try:
            settings = cls(int(params.get("min_calibration_rows", cls.min_rows)), int(params.get("folds", cls.folds)),
                           tuple(float(h) for h in params.get("kernel_bins", cls.kernel_bins)),
                           float(params.get("floor", cls.floor)), int(params.get("refine", cls.refine)),
                           int(params.get("seed", cls.seed)))
        except (TypeError, ValueError) as err:
            raise GalaxypropError(f"params.yaml: calibration: {err}") from None
        if settings.min_rows < 20 or settings.folds < 2 or not settings.kernel_bins or \
                min(settings.kernel_bins) < 0 or not 0 <= settings.floor < 0.1 or settings.refine < 1:
            raise GalaxypropError(f"params.yaml: calibration needs min_calibration_rows >= 20, folds >= 2, "
                                  f"kernel_bins >= 0 (at least one), 0 <= floor < 0.1 and refine >= 1; got {params}")
        return settings

    def grid(self, target_grid: Grid) -> Grid:
        """The grid the calibration works on: the target's, `refine` times finer."""
        return Grid(target_grid.low, target_grid.high, target_grid.n_bins * self.refine)


@dataclass
class Calibrator:
    """Kernel and floor, then the probit map (per field where one was fitted, else the global one).
    `global_map` None: the head's densities were calibrated already and are served as they are."""

    grid: Grid
    kernel_bins: float = 0.0
    floor: float = 0.0
    global_map: ProbitMap | None = None
    field_maps: dict[str, ProbitMap] = field(default_factory=dict)

    @property
    def method(self) -> str:
        if self.global_map is None:
            return "identity (the head's densities pass the calibration test)"
        return f"per-field maps ({', '.join(sorted(self.field_maps))})" if self.field_maps else "global map"

    @property
    def fields(self) -> list[str]:
        return sorted(self.field_maps)

    def prepare(self, pdf: np.ndarray) -> np.ndarray:
        """Full support: the densities convolved with the kernel and mixed with the floor."""
        pdf = normalise(pdf, self.grid)
        if self.kernel_bins > 0:
            kernel = _gaussian_kernel(self.kernel_bins, self.grid.n_bins)
            from scipy.signal import fftconvolve  # imported here: scipy.signal costs ~1 s to import

            pdf = normalise(fftconvolve(pdf, kernel[None, :], mode="same", axes=1), self.grid)
        if self.floor > 0:
            pdf = (1.0 - self.floor) * pdf + self.floor / (self.grid.high - self.grid.low)
        return pdf

    def apply(self, pdf: np.ndarray, fields: Sequence[str] | np.ndarray | None = None) -> np.ndarray:
        """Calibrated densities; `fields` (one PHOTSYS code per row, or None) picks each row's map."""
        if self.global_map is None:
            return normalise(pdf, self.grid)
        probits = probit_cdf_at_edges(self.prepare(pdf), self.grid)
        mapped = self.global_map(probits)
        if self.field_maps and fields is not None:
            fields = np.asarray(fields, dtype=object)
            if len(fields) != len(mapped):
                raise GalaxypropError(f"{len(fields)} survey fields for {len(mapped)} rows")
            for code, own in self.field_maps.items():
                rows = fields == code
                if rows.any():
                    mapped[rows] = own(probits[rows])
        mapped[:, 0], mapped[:, -1] = -np.inf, np.inf
        return from_probit_cdf(mapped, self.grid)


def _gaussian_kernel(width: float, n_bins: int) -> np.ndarray:
    """The share of a bin's mass that a Gaussian of `width` bins moves 0, +-1, +-2, ... bins away
    (out to 8 widths, or across the whole grid; the floor takes care of the farther tails)."""
    half = int(min(np.ceil(8 * width), n_bins))
    offsets = np.arange(-half, half + 1, dtype=float)
    return ndtr((offsets + 0.5) / width) - ndtr((offsets - 0.5) / width)


@dataclass
class CalibrationResult:
    calibrator: Calibrator | None     # None: too few validation rows; the head is served uncalibrated
    validation_pdf: np.ndarray        # out-of-fold calibrated densities of the validation galaxies
    report: dict


def _maps(probits: np.ndarray, fields: np.ndarray, rows: np.ndarray,
          own_maps: Sequence[str]) -> tuple[ProbitMap, dict[str, ProbitMap]]:
    """The global map on `rows` and one map per field in `own_maps` on that field's `rows`."""
    return ProbitMap.fit(probits[rows]), {f: ProbitMap.fit(probits[rows & (fields == f)]) for f in own_maps}


def _out_of_fold(prepared: np.ndarray, probits: np.ndarray, folds: np.ndarray, grid: Grid, fields: np.ndarray,
                 own_maps: Sequence[str] = ()) -> np.ndarray:
    out = np.empty_like(prepared)
    for fold in np.unique(folds):
        held = folds == fold
        fold_calibrator = Calibrator(grid, 0.0, 0.0, *_maps(probits, fields, ~held, own_maps))
        out[held] = fold_calibrator.apply(prepared[held], fields[held])
    return out


def fit_calibration(pdf: np.ndarray, grid: Grid, y: np.ndarray, fields: Sequence[str] | np.ndarray | None = None,
                    settings: CalibrationSettings = CalibrationSettings()) -> CalibrationResult:
    """Fit the calibrator of a head on its validation densities `pdf` at the truths `y` (with each
    galaxy's survey field where the data has fields); see the module docstring."""
    pdf, y = normalise(pdf, grid), np.asarray(y, float)
    n = len(y)
    fields = np.full(n, OVERALL, dtype=object) if fields is None else \
        np.array(["unknown" if f is None else str(f) for f in fields], dtype=object)
    raw = calibration_summary(pdf, grid, y, fields)
    report: dict = {"n": n, "raw": raw}
    if n < settings.min_rows:
        reason = f"{n} validation rows, fewer than calibration.min_calibration_rows = {settings.min_rows}"
        return CalibrationResult(None, pdf, {**report, "calibrated": False, "method": "none", "reason": reason})
    folds = np.random.default_rng(settings.seed).permutation(n) % settings.folds
    scores, best = {}, None          # the kernel width with the lowest out-of-fold CRPS
    for width in settings.kernel_bins:
        prepared = Calibrator(grid, width, settings.floor).prepare(pdf)
        probits = probit_pit(prepared, grid, y)
        held_out = _out_of_fold(prepared, probits, folds, grid, fields)
        scores[width] = float(np.mean(crps(held_out, grid, y)))
        if best is None or scores[width] < scores[best[0]]:
            best = (width, prepared, probits, held_out)
    width, prepared, probits, held_out = best
    # Where one map leaves a field off by more than the noise, every field big enough gets its own.
    global_only = calibration_summary(held_out, grid, y, fields)
    off = [f for f in global_only if f != OVERALL and off_by_more_than_noise(global_only[f])]
    named = [f for f in global_only if f != OVERALL]
    own = [f for f in named if global_only[f]["n"] >= settings.min_rows] if off else []
    if own:
        held_out = _out_of_fold(prepared, probits, folds, grid, fields, own)
    calibrated = calibration_summary(held_out, grid, y, fields)
    report.update(kernel_bins=width, kernel_crps=scores,
                  global_map_metrics=global_only, fields_off_with_global_map=off, field_maps=own,
                  fields_too_small=sorted(set(named) - set(own)) if off else [])
    already = not any(off_by_more_than_noise(m) for m in raw.values())
    if already and raw[OVERALL]["crps"] <= calibrated[OVERALL]["crps"]:
        calibrator = Calibrator(grid)
        return CalibrationResult(calibrator, pdf, {**report, "calibrated": True, "method": calibrator.method,
                                                   "calibrated_metrics": raw})
    calibrator = Calibrator(grid, width, settings.floor, *_maps(probits, fields, np.ones(n, bool), own))
    return CalibrationResult(calibrator, held_out, {**report, "calibrated": True, "method": calibrator.method,
                                                    "calibrated_metrics": calibrated})
