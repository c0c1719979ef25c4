"""Post-hoc calibration of predictive densities, learned on the validation split and stored in the model.

The recipe is Kuleshov et al. (2018, "Accurate uncertainties for deep learning using calibrated
regression"): a monotone map R of each density's CDF, F'(y) = R(F(y)), fitted so that the
validation PITs become uniform. Here R is a monotone spline in probit space, which is exact for a
Gaussian of the wrong width or centre and keeps resolution in the tails; before it, a Gaussian
kernel (its width chosen by cross-validated CRPS) and a tiny uniform floor give every density full
support, so that a histogram with empty bins can be recalibrated too. Where the data has survey
fields (PHOTSYS) and one global map leaves a field off by more than the noise, that field gets its
own map. Pure numpy/scipy: no MLflow, no file paths.
"""

from __future__ import annotations

import importlib

#: name -> `module:name` that defines it, imported on first use (PEP 562), so that importing the package's
#: params schema (`calibration.params`) does not load scipy and the calibrator (the strings are what
#: `provenance.import_closure` follows: a stage using the package still declares every module here).
_EXPORTS = {
    "CalibrationResult": "galaxyprop.calibration.calibrator:CalibrationResult",
    "CalibrationSettings": "galaxyprop.calibration.calibrator:CalibrationSettings",
    "Calibrator": "galaxyprop.calibration.calibrator:Calibrator",
    "fit_calibration": "galaxyprop.calibration.calibrator:fit_calibration",
    "NOMINAL": "galaxyprop.calibration.checks:NOMINAL",
    "OVERALL": "galaxyprop.calibration.checks:OVERALL",
    "calibration_rule_problems": "galaxyprop.calibration.checks:calibration_rule_problems",
    "calibration_summary": "galaxyprop.calibration.checks:calibration_summary",
    "field_groups": "galaxyprop.calibration.checks:field_groups",
    "ks_noise": "galaxyprop.calibration.checks:ks_noise",
    "ProbitMap": "galaxyprop.calibration.probit_map:ProbitMap",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attribute = _EXPORTS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


__all__ = sorted(_EXPORTS)
