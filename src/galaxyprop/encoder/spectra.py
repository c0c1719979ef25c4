"""Spectra as the encoder sees them: checked and normalised per spectrum as AstroCLIP does."""

from __future__ import annotations

import numpy as np
import torch

from galaxyprop.data.astroclip import N_SPECTRUM_PIXELS
from galaxyprop.errors import GalaxypropError


def check_spectra(flux: np.ndarray, what: str = "spectra", row_ids: np.ndarray | None = None) -> np.ndarray:
    """(N, 7781) float32 from (N, 7781) or (N, 7781, 1); a clear error for a bad shape or pixel."""
    flux = np.asarray(flux)
    if flux.ndim == 3 and flux.shape[-1] == 1:
        flux = flux[..., 0]
    if flux.ndim != 2 or flux.shape[1] != N_SPECTRUM_PIXELS:
        raise GalaxypropError(f"{what} must have shape (N, {N_SPECTRUM_PIXELS}) on the DESI grid, got {flux.shape}")
    bad = ~np.isfinite(flux).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad)) if row_ids is None else int(row_ids[np.argmax(bad)])
        raise GalaxypropError(f"{what} row {row} has NaN or infinite pixels ({int(bad.sum())} such rows)")
    return np.ascontiguousarray(flux, dtype=np.float32)


def normalise_spectra(flux: torch.Tensor, std_floor: float) -> torch.Tensor:
    """(x - mean) / max(std, floor) along the wavelength axis of each spectrum."""
    mean = flux.mean(dim=-1, keepdim=True)
    std = flux.std(dim=-1, keepdim=True).clamp_min(std_floor)
    return (flux - mean) / std
