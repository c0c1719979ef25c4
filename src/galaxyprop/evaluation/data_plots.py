"""Figures of the data and the encoder (cutout galleries, loss curves, embedding maps): pure functions of
arrays that return matplotlib figures, apart from the result plots (`evaluation.plots`) so that the
stages that draw them do not depend on the metrics."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def asinh_rgb(image: np.ndarray, softening: float = 0.05, stretch: float = 3.0) -> np.ndarray:
    """g,r,z nanomaggie cutout (H, W, 3) -> RGB in [0, 1] (Lupton et al. 2004 asinh, z->red, g->blue)."""
    rgb = np.clip(image[..., ::-1], 0.0, None)
    intensity = rgb.mean(axis=-1, keepdims=True) + 1e-12
    scaled = np.arcsinh(stretch * intensity / softening) / np.arcsinh(stretch / softening)
    rgb = rgb * scaled / intensity
    return np.clip(rgb / max(np.percentile(rgb, 99.5), 1e-12), 0.0, 1.0)


def cutout_gallery(images: np.ndarray, wave: np.ndarray, spectra: np.ndarray, titles: list[str]) -> Figure:
    """Each galaxy's g,r,z cutout (asinh colour) next to its spectrum, one row per galaxy."""
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(11, 1.9 * n), gridspec_kw={"width_ratios": [1, 4]}, squeeze=False)
    for (ax_image, ax_spec), image, flux, title in zip(axes, images, spectra, titles, strict=True):
        ax_image.imshow(asinh_rgb(image), origin="lower")
        ax_image.set_axis_off()
        smooth = np.convolve(flux, np.ones(9) / 9, mode="same")
        ax_spec.plot(wave, flux, lw=0.3, color="0.7")
        ax_spec.plot(wave, smooth, lw=0.8, color="k")
        low, high = np.percentile(smooth, [1, 99.5])
        ax_spec.set_ylim(low - 0.2 * abs(high - low), high + 0.3 * abs(high - low))
        ax_spec.set_title(title, fontsize=8, loc="left")
        ax_spec.tick_params(labelsize=7)
    axes[-1, 1].set_xlabel("observed wavelength [A]")
    axes[n // 2, 1].set_ylabel("flux [1e-17 erg/s/cm2/A]")
    fig.tight_layout()
    return fig


def loss_curves(history: list[dict], label: str) -> Figure:
    """Training and validation loss per epoch ({epoch, train_loss, val_loss} rows), best epoch marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [row["epoch"] for row in history]
    ax.plot(epochs, [row["train_loss"] for row in history], marker="o", ms=3, label="train")
    ax.plot(epochs, [row["val_loss"] for row in history], marker="o", ms=3, label="validation")
    if history:
        best = min(history, key=lambda row: row["val_loss"])
        ax.axvline(best["epoch"], color="0.5", ls="--", lw=0.8, label=f"best (epoch {best['epoch']})")
    ax.set(xlabel="epoch", ylabel=label, title=f"{label} per epoch")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pca_projection(embeddings: np.ndarray, n_components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The first principal components of `embeddings` and the variance fraction each explains."""
    centred = embeddings - embeddings.mean(axis=0)
    _, singular, vectors = np.linalg.svd(centred, full_matrices=False)
    return centred @ vectors[:n_components].T, singular[:n_components] ** 2 / np.sum(singular ** 2)


def embedding_map(embeddings: np.ndarray, redshift: np.ndarray, field: np.ndarray, title: str) -> Figure:
    """Two PCA panels of the embeddings: coloured by redshift, and by imaging field (PHOTSYS)."""
    coords, explained = pca_projection(np.asarray(embeddings, float))
    fig, (ax_z, ax_field) = plt.subplots(1, 2, figsize=(11, 4.8), sharex=True, sharey=True)
    order = np.argsort(redshift)
    points = ax_z.scatter(coords[order, 0], coords[order, 1], c=redshift[order], s=4, cmap="plasma", alpha=0.8)
    fig.colorbar(points, ax=ax_z, label="spectroscopic redshift")
    for value, colour in zip(sorted(set(field)), ("tab:blue", "tab:orange", "tab:green", "tab:red"), strict=False):
        mask = field == value
        ax_field.scatter(coords[mask, 0], coords[mask, 1], s=4, alpha=0.5, color=colour,
                         label=f"{value} ({mask.sum()})")
    ax_field.legend(title="PHOTSYS", markerscale=3, fontsize=8)
    for ax in (ax_z, ax_field):
        ax.set(xlabel=f"PC1 ({explained[0]:.0%} of variance)", ylabel=f"PC2 ({explained[1]:.0%})")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
