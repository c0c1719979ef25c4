"""Domain-adversarial MLP head (Ganin & Lempitsky 2015, DANN): labelled galaxies of the training field,
unlabelled galaxies of the field to adapt to, and a discriminator on the MLP's last hidden layer
trained through a gradient-reversal layer, so that the features the regressor uses cannot tell the
fields apart. Prediction is the MLP head's (MC dropout); the discriminator is dropped after training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from galaxyprop.errors import GalaxypropError
from galaxyprop.heads.base import check_features, check_target
from galaxyprop.heads.mlp import MLPHead
from galaxyprop.heads.neural import PREDICT_BATCH, LossTask, RegressionNet, Standardise, train_task


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: float) -> torch.Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.weight * grad, None


def reverse_gradient(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Identity forward; the gradient times -weight backward."""
    return _ReverseGradient.apply(x, weight)


class AdversarialTask(LossTask):
    """MSE on the labelled rows plus the discriminator's cross-entropy on every row, through the
    reversal layer; its weight ramps from 0 to `adversary_weight` (Ganin's 2 / (1 + e^{-10 p}) - 1)."""

    def __init__(self, net: RegressionNet, width: int, adversary_weight: float, discriminator_speed: float,
                 learning_rate: float, weight_decay: float, max_epochs: int):
        super().__init__(net, learning_rate, weight_decay, max_epochs)
        self.discriminator = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
        self.adversary_weight, self.discriminator_speed = adversary_weight, discriminator_speed
        self.reversal = 0.0

    def configure_optimizers(self):
        """The discriminator learns `discriminator_speed` times faster than the network, so that it
        keeps up with the features it judges (at one speed the features only learn to fool the
        discriminator of the moment and keep the field in them)."""
        optimizer = torch.optim.AdamW(
            [{"params": self.net.parameters(), "lr": self.learning_rate},
             {"params": self.discriminator.parameters(), "lr": self.learning_rate * self.discriminator_speed}],
            weight_decay=self.weight_decay)
        return optimizer    # a constant rate: the game does not settle while one side's steps shrink

    def on_train_epoch_start(self) -> None:
        progress = self.current_epoch / max(1, self.max_epochs - 1)
        self.reversal = self.adversary_weight * (2 / (1 + math.exp(-10 * progress)) - 1)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.regressor[:-1](self.net.trunk(x))

    def loss(self, batch) -> torch.Tensor:
        x, y, domain, labelled = batch
        hidden = self._hidden(x)
        predicted = self.net.regressor[-1](hidden).squeeze(-1)
        regression = F.mse_loss(predicted[labelled], y[labelled]) if labelled.any() else predicted.sum() * 0
        logits = self.discriminator(reverse_gradient(hidden, self.reversal)).squeeze(-1)
        return regression + F.binary_cross_entropy_with_logits(logits, domain)

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch                     # labelled galaxies of the training field: the regression loss alone
        loss = F.mse_loss(self.net(x), y)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        return loss


class DomainAdversarialHead(MLPHead):
    """The MLP head's hyperparameters (keyword-only) plus the adversary's; `fit` takes the unlabelled
    galaxies of the field to adapt to as its keyword-only option `unlabelled` (required)."""

    name = "dann"

    def __init__(self, *, adversary_weight: float = 1.0, discriminator_speed: float = 10.0, **mlp):
        super().__init__(**mlp)
        self.adversary_weight, self.discriminator_speed = adversary_weight, discriminator_speed

    def fit(self, X: np.ndarray, y: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
            callbacks: Sequence[Callback] = (), unlabelled: np.ndarray | None = None) -> DomainAdversarialHead:
        """Train on the labelled (X, y) and the `unlabelled` galaxies (features only) of the other field;
        with `validation` (labelled galaxies of the training field), early-stop on its regression loss."""
        if unlabelled is None or len(unlabelled) == 0:
            raise GalaxypropError("the domain-adversarial head needs unlabelled galaxies of the field to adapt to")
        for fitted in [name for name in vars(self) if name.endswith("_")]:   # a refit starts afresh
            delattr(self, fitted)
        X, y = self._check(X), check_target(y, len(X))
        unlabelled = check_features(unlabelled, X.shape[1])
        L.seed_everything(self.seed, verbose=False)
        self.target_mean_, self.target_scale_ = float(y.mean()), float(y.std()) or 1.0
        both = np.concatenate([X, unlabelled])
        self.n_features_ = X.shape[1]
        net = RegressionNet(Standardise(both), X.shape[1], self.hidden_layers, self.width, self.dropout)
        task = AdversarialTask(net, self.width, self.adversary_weight, self.discriminator_speed, self.learning_rate,
                               self.weight_decay, self.max_epochs)
        scaled = np.concatenate([(y - self.target_mean_) / self.target_scale_, np.zeros(len(unlabelled))])
        domain = np.concatenate([np.zeros(len(X)), np.ones(len(unlabelled))])
        data = TensorDataset(torch.from_numpy(both), torch.from_numpy(scaled.astype(np.float32)),
                             torch.from_numpy(domain.astype(np.float32)), torch.from_numpy(domain == 0))
        train = DataLoader(data, batch_size=self.batch_size, shuffle=True,
                           generator=torch.Generator().manual_seed(self.seed))
        val = None
        if validation is not None:
            X_val = check_features(validation[0], X.shape[1])
            val = DataLoader(self._dataset(X_val, check_target(validation[1], len(X_val))), batch_size=PREDICT_BATCH)
        best = train_task(task, train, val, max_epochs=self.max_epochs, patience=self.patience, callbacks=callbacks)
        self.net_ = net
        self.history_, self.best_epoch_ = best.history, best.best_epoch
        return self
