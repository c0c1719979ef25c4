"""MLP head (AstroCLIP's few-shot head) on any feature matrix, with MC-dropout spreads."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from galaxyprop.heads.base import check_features
from galaxyprop.heads.neural import NeuralHead


class Standardise(nn.Module):
    """(x - mean) / scale with the training features' statistics stored in the model."""

    def __init__(self, X: np.ndarray):
        super().__init__()
        scale = X.std(axis=0)
        self.register_buffer("mean", torch.from_numpy(X.mean(axis=0).astype(np.float32)))
        self.register_buffer("scale", torch.from_numpy(np.where(scale > 0, scale, 1.0).astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


class MLPHead(NeuralHead):
    name = "mlp"

    def _check(self, X: np.ndarray) -> np.ndarray:
        return check_features(X, getattr(self, "n_features_", None))

    def _trunk(self, X: np.ndarray) -> tuple[nn.Module, int]:
        self.n_features_ = X.shape[1]
        return Standardise(X), X.shape[1]
