"""Figures people look at: pure functions of arrays that return matplotlib figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from galaxyprop.metrics import quantile_bins  # noqa: E402


def prediction_vs_truth(y_true: np.ndarray, y_pred: np.ndarray, label: str, title: str) -> Figure:
    """Density of predicted against true values, with the 1:1 line."""
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = np.percentile(np.concatenate([y_true, y_pred]), [0.5, 99.5])
    pad = 0.05 * (hi - lo)
    extent = (lo - pad, hi + pad)
    ax.hexbin(y_true, y_pred, gridsize=60, extent=extent * 2, mincnt=1, bins="log", cmap="viridis")
    ax.plot(extent, extent, color="crimson", lw=1)
    ax.set(xlim=extent, ylim=extent, xlabel=f"true {label}", ylabel=f"predicted {label}", title=title)
    fig.tight_layout()
    return fig


def residual_vs_redshift(residuals: dict[str, tuple[np.ndarray, np.ndarray]], label: str,
                         n_bins: int = 12) -> Figure:
    """Median residual and its 16-84 % band in redshift bins, one line per head ({head: (z, residual)})."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for head, (redshift, residual) in residuals.items():
        edges, which = quantile_bins(redshift, n_bins)
        centres = 0.5 * (edges[1:] + edges[:-1])
        stats = np.array([np.percentile(residual[which == b], [16, 50, 84]) if (which == b).any()
                          else [np.nan] * 3 for b in range(n_bins)])
        ax.plot(centres, stats[:, 1], marker="o", ms=3, label=head)
        ax.fill_between(centres, stats[:, 0], stats[:, 2], alpha=0.15)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="spectroscopic redshift", ylabel=f"residual in {label} (pred - true)",
           title=f"{label}: residual vs redshift (median, 16-84 %)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
