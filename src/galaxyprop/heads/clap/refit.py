"""CLAP step 4: a network from the latent to the density (softmax over the grid's bins), trained to
reproduce the calibrated KNN densities, so inference needs no neighbour index."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from galaxyprop.heads.neural import LossTask, train_task


class DensityNet(nn.Module):
    """latent -> [Linear, ReLU] x layers -> logits over the grid's bins."""

    def __init__(self, latent_dim: int, n_bins: int, width: int, layers: int):
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Linear(latent_dim if i == 0 else width, width), nn.ReLU()]
        self.net = nn.Sequential(*blocks, nn.Linear(width if layers else latent_dim, n_bins))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.net(latent)

    def probabilities(self, latent: np.ndarray, batch: int = 8192) -> np.ndarray:
        """(n, n_bins) probability of each bin."""
        with torch.inference_mode():
            return np.concatenate([F.softmax(self(torch.from_numpy(latent[s:s + batch])), dim=-1).numpy()
                                   for s in range(0, len(latent), batch)])


class DensityTask(LossTask):
    """Cross-entropy of the network's bin probabilities against the KNN ones (KL up to a constant)."""

    def loss(self, batch) -> torch.Tensor:
        latent, probabilities = batch
        return -(probabilities * F.log_softmax(self.net(latent), dim=-1)).sum(dim=-1).mean()


def fit_density_net(latent: np.ndarray, probabilities: np.ndarray,
                    validation: tuple[np.ndarray, np.ndarray] | None, *, width: int, layers: int,
                    learning_rate: float, weight_decay: float, batch_size: int, max_epochs: int, patience: int,
                    seed: int) -> DensityNet:
    """Fit latents (n, d) -> bin probabilities (n, n_bins); with `validation`, early-stop on it."""
    L.seed_everything(seed, verbose=False)
    net = DensityNet(latent.shape[1], probabilities.shape[1], width, layers)
    task = DensityTask(net, learning_rate, weight_decay, max_epochs)

    def data(latent, probabilities):
        return TensorDataset(torch.from_numpy(np.asarray(latent, np.float32)),
                             torch.from_numpy(np.asarray(probabilities, np.float32)))

    train = DataLoader(data(latent, probabilities), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(data(*validation), batch_size=4096) if validation is not None else None
    train_task(task, train, val, max_epochs=max_epochs, patience=patience)
    return net
