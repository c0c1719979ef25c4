"""The schema of params `calibration`: the post-hoc calibration every served density goes through."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.validation.rules import Schema, fail, got, reuse


def _check_calibration(calibration: Mapping, params: Mapping) -> None:
    from galaxyprop.calibration.calibrator import CalibrationSettings

    if calibration.get("folds", 2) < 2:
        fail("calibration.folds", f"must be at least 2, {got(calibration['folds'])}")
    reuse("calibration", lambda: CalibrationSettings.from_params(calibration))


CALIBRATION_SCHEMA = Schema(
    rules={"calibration.min_calibration_rows": "count", "calibration.folds": "count",
           "calibration.kernel_bins": "naturals", "calibration.refine": "count", "calibration.floor": "prob",
           "calibration.seed": "int"},
    closed={"calibration": {"min_calibration_rows", "folds", "kernel_bins", "refine", "floor", "seed"}},
    checks={"calibration": _check_calibration})
