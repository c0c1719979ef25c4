"""CLAP step 1: a supervised contrastive projection of the features into a small L2-normalised
latent where galaxies with close targets are neighbours (Khosla et al. 2020; Lin et al. 2024)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from galaxyprop.heads.neural import LossTask, Standardise, train_task


def supervised_contrastive_loss(latent: torch.Tensor, target: torch.Tensor, tolerance: float,
                                temperature: float) -> torch.Tensor:
    """SupCon: each anchor must pick its positives (targets within `tolerance`) among the batch.
    `latent` is L2-normalised; anchors without a positive in the batch do not count."""
    logits = latent @ latent.T / temperature
    itself = torch.eye(len(latent), dtype=torch.bool, device=latent.device)
    logits = logits.masked_fill(itself, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = ((target[:, None] - target[None, :]).abs() < tolerance) & ~itself
    n_positive = positive.sum(dim=1)
    anchors = n_positive > 0
    if not anchors.any():
        return latent.sum() * 0.0
    per_anchor = log_prob.masked_fill(~positive, 0.0).sum(dim=1)[anchors] / n_positive[anchors]
    return -per_anchor.mean()


class ProjectionNet(nn.Module):
    """Standardised features -> [Linear, ReLU] x layers -> Linear to `latent_dim`, L2-normalised."""

    def __init__(self, X: np.ndarray, latent_dim: int, width: int, layers: int):
        super().__init__()
        blocks: list[nn.Module] = [Standardise(X)]
        for i in range(layers):
            blocks += [nn.Linear(X.shape[1] if i == 0 else width, width), nn.ReLU()]
        blocks.append(nn.Linear(width if layers else X.shape[1], latent_dim))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)

    def transform(self, X: np.ndarray, batch: int = 8192) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([self(torch.from_numpy(X[s:s + batch])).numpy()
                                   for s in range(0, len(X), batch)]) if len(X) else np.empty((0, 1), np.float32)


class ProjectionTask(LossTask):
    def __init__(self, net: ProjectionNet, tolerance: float, temperature: float, **optimiser):
        super().__init__(net, **optimiser)
        self.tolerance, self.temperature = tolerance, temperature

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        return supervised_contrastive_loss(self.net(x), y, self.tolerance, self.temperature)


def fit_projection(X: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None, *,
                   latent_dim: int, width: int, layers: int, tolerance: float, temperature: float,
                   learning_rate: float, weight_decay: float, batch_size: int, max_epochs: int, patience: int,
                   seed: int) -> ProjectionNet:
    """Train the projection on standardised targets `y` (tolerance in their units); with
    `validation`, early-stop on its contrastive loss."""
    L.seed_everything(seed, verbose=False)
    net = ProjectionNet(X, latent_dim, width, layers)
    task = ProjectionTask(net, tolerance, temperature, learning_rate=learning_rate, weight_decay=weight_decay,
                          max_epochs=max_epochs)

    def loader(X, y, shuffle):
        data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y.astype(np.float32)))
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle and len(X) > batch_size,
                          generator=torch.Generator().manual_seed(seed) if shuffle else None)

    val = loader(*validation, shuffle=False) if validation is not None else None
    train_task(task, loader(X, y, shuffle=True), val, max_epochs=max_epochs, patience=patience)
    return net
