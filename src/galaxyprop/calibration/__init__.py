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

from galaxyprop.calibration.calibrator import CalibrationResult, CalibrationSettings, Calibrator, fit_calibration
from galaxyprop.calibration.checks import (
                                           NOMINAL,
                                           OVERALL,
                                           calibration_rule_problems,
                                           calibration_summary,
                                           field_groups,
                                           ks_noise,
)
from galaxyprop.calibration.probit_map import ProbitMap

__all__ = ["NOMINAL", "OVERALL", "Calibrator", "CalibrationResult", "CalibrationSettings", "ProbitMap",
           "calibration_rule_problems", "calibration_summary", "field_groups", "fit_calibration", "ks_noise"]
