"""Supervised CNN head: the encoder's residual image trunk trained end to end on the cutouts for one
target (the reference AstroCLIP compares its embeddings with), with MC-dropout spreads."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from galaxyprop.encoder.networks import ImageTrunk
from galaxyprop.features.images import background_noise, channels_first, prepare_cutouts
from galaxyprop.heads.neural import NeuralHead

SKY_NOISE_SAMPLE = 2000   # cutouts the asinh softening is measured on


class CutoutCNN(nn.Module):
    """Crop (randomly shifted and D4-transformed in training), asinh stretch, residual trunk, pooling."""

    def __init__(self, softening: np.ndarray, channels: int, crop: int, max_shift: int):
        super().__init__()
        self.crop, self.max_shift = crop, max_shift
        self.register_buffer("softening", torch.as_tensor(softening, dtype=torch.float32))
        self.trunk = ImageTrunk((channels, 2 * channels, 4 * channels))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(prepare_cutouts(images, self.softening, self.crop, self.max_shift, self.training))


class CNNHead(NeuralHead):
    """Its inputs are g,r,z cutouts (N, 3, H, W) or (N, H, W, 3) in nanomaggies per pixel."""

    name = "cnn"
    show_progress = True

    def __init__(self, *, channels: int = 16, crop: int = 48, max_shift: int = 4, hidden_layers: int = 1,
                 width: int = 64, dropout: float = 0.1, learning_rate: float = 2e-3, weight_decay: float = 1e-4,
                 batch_size: int = 128, max_epochs: int = 15, patience: int = 4, n_mc: int = 30, seed: int = 0):
        super().__init__(hidden_layers=hidden_layers, width=width, dropout=dropout, learning_rate=learning_rate,
                         weight_decay=weight_decay, batch_size=batch_size, max_epochs=max_epochs, patience=patience,
                         n_mc=n_mc, seed=seed)
        self.channels = channels
        self.crop = crop
        self.max_shift = max_shift

    def _check(self, X: np.ndarray) -> np.ndarray:
        return channels_first(X, min_size=self.crop, what="cutouts")

    def _trunk(self, X: np.ndarray) -> tuple[nn.Module, int]:
        sample = X[np.linspace(0, len(X) - 1, min(len(X), SKY_NOISE_SAMPLE)).astype(int)]
        trunk = CutoutCNN(background_noise(sample), self.channels, self.crop, self.max_shift)
        return trunk, trunk.trunk.n_features
