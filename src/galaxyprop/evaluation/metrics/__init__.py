"""Metrics: pure functions of arrays, keyed as in DESIGN.md's contract."""

from __future__ import annotations

import numpy as np

from galaxyprop.evaluation.metrics.density import crps, density_metrics, pit_metrics, w1_to_uniform
from galaxyprop.evaluation.metrics.point import (
    is_better,
    objective_value,
    redshift_metrics,
    regression_metrics,
    sigma_nmad,
)


def quantile_bins(values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges of `n_bins` equal-count bins of `values`, and each value's bin index."""
    edges = np.quantile(values, np.linspace(0, 1, n_bins + 1))
    return edges, np.clip(np.searchsorted(edges, values, side="right") - 1, 0, n_bins - 1)


def target_metrics(target: str, y_true: np.ndarray, y_pred: np.ndarray,
                   outlier_threshold: float, eta_threshold: float = 0.05) -> dict[str, float]:
    """All point metrics of the contract for one target (`z` adds the photo-z metrics)."""
    metrics = regression_metrics(y_true, y_pred, outlier_threshold)
    if target == "z":
        metrics.update(redshift_metrics(y_true, y_pred, eta_threshold))
    return metrics


__all__ = ["crps", "density_metrics", "is_better", "objective_value", "pit_metrics",
           "quantile_bins", "redshift_metrics", "regression_metrics", "sigma_nmad", "target_metrics",
           "w1_to_uniform"]
