"""Point-estimate metrics (DESIGN.md): regression metrics for every target, photo-z metrics for z."""

from __future__ import annotations

import numpy as np

MAD_TO_SIGMA = 1.4826


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    if y_true.shape != y_pred.shape or len(y_true) == 0:
        raise ValueError(f"need two equal, non-empty arrays, got {y_true.shape} and {y_pred.shape}")
    return y_true, y_pred


def sigma_nmad(residual: np.ndarray) -> float:
    """1.4826 x the median absolute deviation from the median."""
    residual = np.asarray(residual, dtype=float)
    return float(MAD_TO_SIGMA * np.median(np.abs(residual - np.median(residual))))


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, outlier_threshold: float) -> dict[str, float]:
    """R^2, MAE, MSE, RMSE, sigma_NMAD of the residual and the fraction with |residual| > threshold."""
    y_true, y_pred = _pair(y_true, y_pred)
    residual = y_pred - y_true
    mse = float(np.mean(residual**2))
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "r2": 1.0 - float(np.sum(residual**2)) / total if total > 0 else float("nan"),
        "mae": float(np.mean(np.abs(residual))),
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "sigma_nmad": sigma_nmad(residual),
        "outlier_rate": float(np.mean(np.abs(residual) > outlier_threshold)),
    }


def redshift_metrics(z_true: np.ndarray, z_pred: np.ndarray, eta_threshold: float = 0.05) -> dict[str, float]:
    """Photo-z metrics on dz = (z_phot - z_spec) / (1 + z_spec): sigma_MAD, eta, mean and median bias."""
    z_true, z_pred = _pair(z_true, z_pred)
    dz = (z_pred - z_true) / (1.0 + z_true)
    return {
        "sigma_mad": sigma_nmad(dz),
        "eta": float(np.mean(np.abs(dz) > eta_threshold)),
        "bias": float(np.mean(dz)),
        "bias_median": float(np.median(dz)),
    }


#: Metrics where a larger value is better; for the biases the magnitude counts.
HIGHER_IS_BETTER = {"r2"}
SIGNED = {"bias", "bias_median"}


def is_better(metric: str, candidate: float, reference: float) -> bool:
    """Whether `candidate` is no worse than `reference` on `metric`."""
    if metric in HIGHER_IS_BETTER:
        return candidate >= reference
    if metric in SIGNED:
        return abs(candidate) <= abs(reference)
    return candidate <= reference


def objective_value(metric: str, value: float) -> float:
    """A value to minimise that orders like `is_better`."""
    if metric in HIGHER_IS_BETTER:
        return -value
    return abs(value) if metric in SIGNED else value
