"""MLP head (AstroCLIP's few-shot head) on any feature matrix, with MC-dropout spreads."""

from __future__ import annotations

import numpy as np
from torch import nn

from galaxyprop.heads.base import check_features
from galaxyprop.heads.neural import NeuralHead, Standardise  # Standardise: also where older pickles look


class MLPHead(NeuralHead):
    name = "mlp"

    def _check(self, X: np.ndarray) -> np.ndarray:
        return check_features(X, getattr(self, "n_features_", None))

    def _trunk(self, X: np.ndarray) -> tuple[nn.Module, int]:
        self.n_features_ = X.shape[1]
        return Standardise(X), X.shape[1]
