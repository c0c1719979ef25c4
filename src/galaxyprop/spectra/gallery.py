"""A gallery of predicted spectra: per galaxy its g,r,z cutout, the observed spectrum and the prediction
with its +-1 sigma band; `pick_gallery` chooses galaxies that span redshift and type."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

# evaluation.plots also selects the Agg backend, as for every figure of the project.
from galaxyprop.evaluation.data_plots import asinh_rgb


def smooth_spectrum(flux: np.ndarray, ivar: np.ndarray | None, width: int = 9) -> np.ndarray:
    """Inverse-variance-weighted running mean over `width` pixels (masked pixels: ivar <= 0, NaN)."""
    flux = np.asarray(flux, float)
    weights = np.ones_like(flux) if ivar is None else np.asarray(ivar, float)
    weights = np.where(np.isfinite(flux) & np.isfinite(weights) & (weights > 0), weights, 0.0)
    kernel = np.ones(width)
    total = np.convolve(weights, kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.convolve(np.where(weights > 0, flux, 0.0) * weights, kernel, "same") / total,
                        np.nan)


def gallery_figure(cutouts: np.ndarray, wave: np.ndarray, observed: np.ndarray, ivar: np.ndarray | None,
                   predicted: np.ndarray, spread: np.ndarray, z: np.ndarray, labels: Sequence[str]) -> Figure:
    """One row per galaxy: the asinh gri cutout, the observed spectrum (smoothed, grey) and the predicted
    spectrum with its +-1 sigma band, against observed wavelength."""
    n = len(cutouts)
    fig, axes = plt.subplots(n, 2, figsize=(11, 1.9 * n + 0.4), gridspec_kw={"width_ratios": [1, 4]},
                             squeeze=False)
    for i, (ax_image, ax_spec) in enumerate(axes):
        ax_image.imshow(asinh_rgb(np.asarray(cutouts[i], float)), origin="lower")
        ax_image.set_axis_off()
        smooth = smooth_spectrum(observed[i], None if ivar is None else ivar[i])
        ax_spec.plot(wave, smooth, lw=0.6, color="0.6", label="observed (smoothed)")
        ax_spec.fill_between(wave, predicted[i] - spread[i], predicted[i] + spread[i], color="tab:blue",
                             alpha=0.3, lw=0, label="predicted +-1 sigma")
        ax_spec.plot(wave, predicted[i], lw=0.8, color="tab:blue", label="predicted")
        shown = np.concatenate([smooth[np.isfinite(smooth)], np.asarray(predicted[i])[np.isfinite(predicted[i])]])
        if shown.size:
            low, high = np.percentile(shown, [1, 99.5])
            ax_spec.set_ylim(low - 0.2 * abs(high - low), high + 0.3 * abs(high - low))
        ax_spec.set_title(f"{labels[i]}  z = {float(z[i]):.3f}", fontsize=8, loc="left")
        ax_spec.tick_params(labelsize=7)
    axes[0, 1].legend(fontsize=7, loc="upper right", ncol=3)
    axes[-1, 1].set_xlabel("observed wavelength [A]")
    axes[n // 2, 1].set_ylabel("flux [1e-17 erg/s/cm2/A]")
    fig.tight_layout()
    return fig


def pick_gallery(z: np.ndarray, colour_or_type: np.ndarray, n: int) -> np.ndarray:
    """Indices of `n` galaxies spanning redshift within each type, sorted by redshift.

    `colour_or_type` is a category per galaxy (e.g. red/blue, a type name) or a number (e.g. g - r),
    which is split at its median into two types. Each type gets a share of `n` in proportion to
    its size (at least one where possible), taken at evenly spaced redshift quantiles of that type.
    """
    z = np.asarray(z, float)
    kind = np.asarray(colour_or_type)
    if kind.dtype.kind == "f":
        kind = np.where(kind > np.nanmedian(kind), "redder", "bluer")
    n = min(int(n), len(z))
    types, counts = np.unique(kind, return_counts=True)
    share = np.maximum(1, np.floor(n * counts / counts.sum())).astype(int)
    while share.sum() > n:
        share[np.argmax(share)] -= 1
    while share.sum() < n:
        spare = counts - share
        share[np.argmax(spare)] += 1
    picked: list[int] = []
    for kind_value, count in zip(types, share, strict=True):
        members = np.flatnonzero(kind == kind_value)
        members = members[np.argsort(z[members], kind="stable")]
        take = np.unique(np.round(np.linspace(0, len(members) - 1, min(count, len(members)))).astype(int))
        picked.extend(members[take].tolist())
    picked = np.array(sorted(set(picked)), dtype=int)
    return picked[np.argsort(z[picked], kind="stable")]
