"""Neural heads: a trunk (feature standardisation, or a CNN on cutouts) then an MLP with dropout to
the target, trained with Lightning. MC dropout at prediction gives the mean and the spread.

Only the MLP after the trunk has dropout, so MC prediction runs the trunk once per galaxy and the
cheap MLP `n_mc` times. A head's inputs are one array (features, or cutouts) or several arrays row
for row (cutouts and catalogue features): the trunk takes them all, `trunk(*arrays)`. Training
early-stops on the validation split when one is given and keeps the best epoch's weights; the
Lightning callbacks a caller passes (e.g. Optuna's pruning) see `val_loss`, the MSE on the
standardised target.
"""

from __future__ import annotations

import copy
import logging
import warnings
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from galaxyprop.evaluation.densities import Grid, gaussian_densities
from galaxyprop.heads.base import Head, Prediction, check_target

for _name in ("lightning.pytorch", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated", category=Warning)
warnings.filterwarnings("ignore", message="You defined a `validation_step` but have no `val_dataloader`")

PREDICT_BATCH = 1024


class Standardise(nn.Module):
    """(x - mean) / scale with the training features' statistics stored in the model."""

    def __init__(self, X: np.ndarray):
        super().__init__()
        scale = X.std(axis=0)
        self.register_buffer("mean", torch.from_numpy(X.mean(axis=0).astype(np.float32)))
        self.register_buffer("scale", torch.from_numpy(np.where(scale > 0, scale, 1.0).astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def as_arrays(inputs: np.ndarray | tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """A head's checked inputs as a tuple of arrays (one array is a 1-tuple)."""
    return inputs if isinstance(inputs, tuple) else (inputs,)


class RegressionNet(nn.Module):
    """trunk -> [Linear, ReLU, Dropout] x hidden_layers -> Linear to one output; the trunk takes all
    the head's input arrays (`trunk(*x)`)."""

    def __init__(self, trunk: nn.Module, n_features: int, hidden_layers: int, width: int, dropout: float):
        super().__init__()
        if hidden_layers < 1:
            raise ValueError(f"hidden_layers must be at least 1 (dropout lives there), got {hidden_layers}")
        layers: list[nn.Module] = []
        for i in range(hidden_layers):
            layers += [nn.Linear(n_features if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout)]
        self.trunk = trunk
        self.regressor = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, *x: torch.Tensor) -> torch.Tensor:
        return self.regressor(self.trunk(*x)).squeeze(-1)

    def dropout_masks(self, n_samples: int, generator: torch.Generator) -> list[torch.Tensor]:
        """One (n_samples, 1, width) inverted-dropout mask per dropout layer: each sample is one
        thinned network, applied alike to every galaxy."""
        masks = []
        for layer in self.regressor:
            if isinstance(layer, nn.Dropout):
                keep = 1.0 - layer.p
                masks.append(torch.bernoulli(torch.full((n_samples, 1, self.regressor[0].out_features), keep),
                                             generator=generator) / keep)
        return masks

    def sample(self, features: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
        """(n_samples, n) outputs of the thinned networks `masks` on trunk `features` (n, n_features)."""
        h, remaining = features.unsqueeze(0), iter(masks)
        for layer in self.regressor:
            h = h * next(remaining).to(h.device) if isinstance(layer, nn.Dropout) else layer(h)
        return h.squeeze(-1)


class LossTask(L.LightningModule):
    """A network, its loss (`loss(batch)`) and the optimiser every head uses: AdamW with a cosine
    schedule. Logs `train_loss` and `val_loss` per epoch."""

    def __init__(self, net: nn.Module, learning_rate: float, weight_decay: float, max_epochs: int):
        super().__init__()
        self.net = net
        self.learning_rate, self.weight_decay, self.max_epochs = learning_rate, weight_decay, max_epochs

    @abstractmethod
    def loss(self, batch) -> torch.Tensor:
        """The batch's mean loss."""

    def _step(self, batch, stage: str) -> torch.Tensor:
        loss = self.loss(batch)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch[0]))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": schedule}


class RegressionTask(LossTask):
    """MSE on the standardised target; a batch is the input arrays then the target."""

    def loss(self, batch) -> torch.Tensor:
        *x, y = batch
        return F.mse_loss(self.net(*x), y)


class BestWeights(Callback):
    """Keeps the weights of the epoch with the lowest `val_loss` (the last epoch without validation)
    and the per-epoch loss history."""

    def __init__(self):
        self.best_loss, self.best_state, self.best_epoch = float("inf"), None, -1
        self.history: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("train_loss", "val_loss")}
        self.history.append({"epoch": task.current_epoch, **metrics})
        loss = metrics.get("val_loss", -float("inf"))
        if loss <= self.best_loss or "val_loss" not in metrics:
            self.best_loss, self.best_epoch = loss, task.current_epoch
            self.best_state = copy.deepcopy(task.net.state_dict())


class EpochReporter(Callback):
    """Hands each epoch's losses to `report(metrics, step)` (e.g. MLflow curves of a tuning trial):
    `val_loss` as soon as validation ends, so a trial pruned there still records it."""

    def __init__(self, report: Callable[[dict, int], None]):
        self.report = report

    def on_validation_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        if not trainer.sanity_checking and "val_loss" in trainer.callback_metrics:
            self.report({"val_loss": float(trainer.callback_metrics["val_loss"])}, task.current_epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        if "train_loss" in trainer.callback_metrics:
            self.report({"train_loss": float(trainer.callback_metrics["train_loss"])}, task.current_epoch)


def train_task(task: L.LightningModule, train: DataLoader, val: DataLoader | None, *, max_epochs: int,
               patience: int, callbacks: Sequence[Callback] = (), show_progress: bool = False) -> BestWeights:
    """Lightning's loop for every network of the heads: with `val`, early stopping on `val_loss`;
    `task.net` ends with the best epoch's weights, on the CPU, in evaluation mode."""
    best = BestWeights()
    extra: list[Callback] = [best]
    if val is not None:
        extra.append(EarlyStopping("val_loss", patience=patience, mode="min"))
    task.train()       # Lightning keeps the modes it is given (a warm-started `task.net` comes back in eval mode)
    trainer = L.Trainer(max_epochs=max_epochs, accelerator="auto", devices=1, logger=False,
                        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=show_progress,
                        num_sanity_val_steps=0, callbacks=[*callbacks, *extra], deterministic="warn")
    trainer.fit(task, train, val)
    task.net.load_state_dict(best.best_state)
    task.net.cpu().eval()
    return best


class NeuralHead(Head):
    """The shared training and MC-dropout prediction; subclasses build the trunk and check inputs."""

    trains_by_epoch = True
    gives_density = True
    show_progress: ClassVar[bool] = False   # Lightning's per-epoch bar (for heads slow enough to need it)

    def __init__(self, *, hidden_layers: int = 2, width: int = 128, dropout: float = 0.1,
                 learning_rate: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 128,
                 max_epochs: int = 50, patience: int = 8, n_mc: int = 50, seed: int = 0):
        self.hidden_layers = hidden_layers
        self.width = width
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.n_mc = n_mc
        self.seed = seed

    @abstractmethod
    def _check(self, X) -> np.ndarray | tuple[np.ndarray, ...]:
        """`X` as the float32 array the trunk takes (or a tuple of arrays, row for row, for a trunk
        of several inputs), or a clear error."""

    @abstractmethod
    def _trunk(self, *X: np.ndarray) -> tuple[nn.Module, int]:
        """The trunk for the training input arrays `X` (as `_check` gives them) and how many features
        it gives."""

    def fit(self, X: np.ndarray, y: np.ndarray, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
            callbacks: Sequence[Callback] = ()) -> NeuralHead:
        """Train on (X, y); with `validation`, early-stop on it and keep the best epoch's weights;
        `callbacks` (e.g. Optuna's pruning) see each epoch's `val_loss`."""
        for fitted in [name for name in vars(self) if name.endswith("_")]:   # a refit starts afresh
            delattr(self, fitted)
        X = as_arrays(self._check(X))
        y = check_target(y, len(X[0]))
        L.seed_everything(self.seed, verbose=False)
        self.target_mean_, self.target_scale_ = float(y.mean()), float(y.std()) or 1.0
        trunk, n_features = self._trunk(*X)
        net = RegressionNet(trunk, n_features, self.hidden_layers, self.width, self.dropout)
        task = self._task(net)
        generator = torch.Generator().manual_seed(self.seed)
        train = DataLoader(self._dataset(X, y), batch_size=self.batch_size, shuffle=True, generator=generator)
        val = checked = None
        if validation is not None:
            X_val = as_arrays(self._check(validation[0]))
            checked = (X_val, check_target(validation[1], len(X_val[0])))
            val = DataLoader(self._dataset(*checked), batch_size=PREDICT_BATCH)
        self._warm_start(net, X, y, checked)
        best = train_task(task, train, val, max_epochs=self.max_epochs, patience=self.patience,
                          callbacks=callbacks, show_progress=self.show_progress)
        self.net_ = net
        self.history_, self.best_epoch_ = best.history, best.best_epoch
        return self

    def _task(self, net: RegressionNet) -> LossTask:
        """The training of `net`: the MSE with one learning rate for every parameter."""
        return RegressionTask(net, self.learning_rate, self.weight_decay, self.max_epochs)

    def _warm_start(self, net: RegressionNet, X: tuple[np.ndarray, ...], y: np.ndarray,
                    validation: tuple[tuple[np.ndarray, ...], np.ndarray] | None) -> None:
        """Before the training proper, train part of `net` on the checked training (and validation)
        inputs; the heads' default is to start from the initialisation."""

    def _dataset(self, X: np.ndarray | tuple[np.ndarray, ...], y: np.ndarray) -> TensorDataset:
        """The input array(s) `X` and the standardised target: batches of (*arrays, y)."""
        scaled = (y - self.target_mean_) / self.target_scale_
        return TensorDataset(*map(torch.from_numpy, as_arrays(X)), torch.from_numpy(scaled.astype(np.float32)))

    def predict(self, X: np.ndarray) -> Prediction:
        """MC dropout: the mean and standard deviation over `n_mc` thinned networks (seeded, the same
        for every galaxy, so a galaxy's answer does not depend on the batch it comes in)."""
        X = as_arrays(self._check(X))
        net = self.net_.eval()
        samples = np.empty((len(X[0]), max(1, self.n_mc)), np.float32)
        with torch.inference_mode():
            masks = (net.dropout_masks(self.n_mc, torch.Generator().manual_seed(self.seed)) if self.n_mc
                     else None)
            for start in range(0, len(X[0]), PREDICT_BATCH):
                features = net.trunk(*(torch.from_numpy(x[start:start + PREDICT_BATCH]) for x in X))
                out = net.sample(features, masks).T if masks else net.regressor(features)
                samples[start:start + PREDICT_BATCH] = out.reshape(len(features), -1).numpy()
        samples = samples.astype(float) * self.target_scale_ + self.target_mean_
        return Prediction(samples.mean(axis=1), samples.std(axis=1))

    def predict_pdf(self, X: np.ndarray, grid: Grid) -> np.ndarray:
        """A Gaussian with the MC-dropout mean and spread."""
        return self.predict_with_pdf(X, grid)[1]

    def predict_with_pdf(self, X: np.ndarray, grid: Grid) -> tuple[Prediction, np.ndarray]:
        prediction = self.predict(X)
        return prediction, gaussian_densities(prediction.value, prediction.spread, grid)
