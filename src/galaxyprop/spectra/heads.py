"""Multi-output heads from a feature matrix (n, d) to a spectrum's targets (n, m): its latents, then
the redshift and the log norm (`spectrum_targets` builds them; the decoder needs all three).

Both heads give a mean and a spread per output and draw whole target vectors for the decoded spread:
- `knn`: the project's faiss KNN (heads.knn) on standardised features; k chosen on the validation
  split from `ks`; mean and standard deviation of the neighbours' targets (distance-weighted);
  draws are neighbours' target vectors, so each draw is a real galaxy's latent, z and norm.
- `mlp`: a deep ensemble (Lakshminarayanan et al. 2017) of `n_members` small MLPs trained together
  (one batched network) with the project's Lightning loop (heads.neural.train_task: AdamW, cosine
  schedule, early stopping on the validation loss, best epoch kept; the GPU when there is one).
  Each member predicts a mean and a variance per standardised output (beta-NLL, Seitzer et al.
  2022); the spread is the mixture's: mean member variance plus the variance of the member means.
  Draws pick a member, then a Gaussian per output (outputs independent given the member).

Reproducible: both heads fit, predict and draw on one BLAS / OpenMP / torch thread
(`resources.one_thread`), so the same inputs give the same bytes whatever the thread count. faiss's
exact search on wide features (an OpenMP OpenBLAS sgemm) gives other last digits with 2 threads than with
1, which moves the chosen k, the weights and every metric after; the MLP is seeded (its initialisation,
its shuffling, Lightning's deterministic algorithms), and one thread keeps torch's CPU products in one order.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from galaxyprop.errors import GalaxypropError
from galaxyprop.features.scaling import make_scaler
from galaxyprop.heads.base import check_features
from galaxyprop.heads.neural import PREDICT_BATCH, LossTask, train_task
from galaxyprop.resources import one_thread
from galaxyprop.spectra.names import SPECTRUM_HEADS


def spectrum_targets(latents: np.ndarray, z: np.ndarray, log_norm: np.ndarray) -> np.ndarray:
    """The heads' targets (n, k + 2): latents, redshift, log10 norm."""
    return np.column_stack([np.asarray(latents, float), np.asarray(z, float), np.asarray(log_norm, float)])


def split_targets(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latents (..., k), z (...), log_norm (...)) from targets laid out as `spectrum_targets`."""
    Y = np.asarray(Y)
    return Y[..., :-2], Y[..., -2], Y[..., -1]


def _check_targets(Y: np.ndarray, n_rows: int, n_outputs: int | None = None) -> np.ndarray:
    Y = np.asarray(Y, float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if Y.ndim != 2 or len(Y) != n_rows:
        raise GalaxypropError(f"targets must be ({n_rows}, m), got shape {Y.shape}")
    if n_outputs is not None and Y.shape[1] != n_outputs:
        raise GalaxypropError(f"targets have {Y.shape[1]} columns, the head was fitted on {n_outputs}")
    if not np.isfinite(Y).all():
        raise GalaxypropError(f"targets have {int((~np.isfinite(Y)).any(axis=1).sum())} rows with non-finite values")
    return Y


def standardised_mse(Y_true: np.ndarray, Y_pred: np.ndarray) -> float:
    """Mean over outputs of MSE / variance of the truth: the heads' model-selection score."""
    variance = Y_true.var(axis=0)
    return float(np.mean(((Y_pred - Y_true) ** 2).mean(axis=0) / np.where(variance > 0, variance, 1.0)))


class SpectrumHead(ABC):
    """fit(X_train, Y_train, X_val, Y_val); predict(X) -> (mean, std) (n, m); sample(X, n, rng) -> (n, N, m)."""

    name: str

    @abstractmethod
    def fit(self, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray | None = None,
            Y_val: np.ndarray | None = None) -> SpectrumHead:
        """Learn targets Y (n, m) from features X (n, d); the validation split selects / early-stops."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (n, m) of every output."""

    @abstractmethod
    def sample(self, X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` draws of the whole target vector for every galaxy, (n, N, m)."""


class KNNSpectrumHead(SpectrumHead):
    name = "knn"

    def __init__(self, *, ks: Sequence[int] = (4, 8, 16, 32, 64), weights: str = "distance",
                 scaling: str = "standard"):
        self.ks = tuple(ks)
        self.weights = weights
        self.scaling = scaling

    @one_thread()
    def fit(self, X_train, Y_train, X_val=None, Y_val=None) -> KNNSpectrumHead:
        """Index the training galaxies; with a validation split, k is the one of `ks` with the lowest
        standardised MSE there (else the largest of `ks` that the training set allows)."""
        from galaxyprop.heads.knn import KNNHead

        X_train = check_features(X_train)
        self.train_targets_ = _check_targets(Y_train, len(X_train))
        ks = sorted({min(int(k), len(X_train)) for k in self.ks if k >= 1})
        if not ks:
            raise GalaxypropError(f"ks must hold positive integers, got {self.ks}")
        self.index_ = KNNHead(k=ks[-1], weights=self.weights, scaling=self.scaling).fit(
            X_train, np.zeros(len(X_train)))
        self.validation_scores_ = {}
        if X_val is not None and Y_val is not None:
            X_val = check_features(X_val, X_train.shape[1])
            Y_val = _check_targets(Y_val, len(X_val), self.train_targets_.shape[1])
            distances, indices = self.index_.neighbours(X_val)
            for k in ks:
                mean, _ = self._summarise(distances[:, :k], indices[:, :k])
                self.validation_scores_[k] = standardised_mse(Y_val, mean)
            self.k_ = min(self.validation_scores_, key=self.validation_scores_.get)
        else:
            self.k_ = ks[-1]
        self.index_.k = self.k_
        return self

    def _weights(self, distances: np.ndarray) -> np.ndarray:
        weights = self.index_.neighbour_weights(distances)
        return weights / weights.sum(axis=1, keepdims=True)

    def _summarise(self, distances: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        weights = self._weights(distances)[:, :, None]
        targets = self.train_targets_[indices]
        mean = (weights * targets).sum(axis=1)
        return mean, np.sqrt((weights * (targets - mean[:, None, :]) ** 2).sum(axis=1))

    @one_thread()
    def predict(self, X):
        return self._summarise(*self.index_.neighbours(X))

    @one_thread()
    def sample(self, X, n, rng):
        distances, indices = self.index_.neighbours(X)
        cumulative = np.cumsum(self._weights(distances), axis=1)
        draws = rng.random((len(indices), n))
        picked = np.minimum((draws[:, :, None] > cumulative[:, None, :]).sum(axis=2), indices.shape[1] - 1)
        chosen = np.take_along_axis(indices, picked, axis=1)            # (N, n)
        return np.transpose(self.train_targets_[chosen], (1, 0, 2))


# -- the MLP ensemble ---------------------------------------------------------------------------
class BatchedLinear(nn.Module):
    """`n_members` independent Linear layers applied at once: (M, B, n_in) -> (M, B, n_out)."""

    def __init__(self, n_members: int, n_in: int, n_out: int, generator: torch.Generator):
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)      # nn.Linear's default initialisation, drawn per member
        self.weight = nn.Parameter((torch.rand(n_members, n_in, n_out, generator=generator) * 2 - 1) * bound)
        self.bias = nn.Parameter((torch.rand(n_members, 1, n_out, generator=generator) * 2 - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """M MLPs [BatchedLinear, ReLU, Dropout] x hidden_layers -> a mean and a log-variance per output."""

    def __init__(self, n_members: int, n_features: int, n_outputs: int, hidden_layers: int, width: int,
                 dropout: float, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        for i in range(hidden_layers):
            layers += [BatchedLinear(n_members, n_features if i == 0 else width, width, generator), nn.ReLU(),
                       nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)
        self.out = BatchedLinear(n_members, width if hidden_layers else n_features, 2 * n_outputs, generator)
        self.n_members = n_members

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.out(self.body(x.unsqueeze(0).expand(self.n_members, -1, -1)))
        mean, log_var = h.chunk(2, dim=-1)
        return mean, log_var.clamp(-10.0, 6.0)     # spread >= e^-5 of the target's scale, always > 0


class EnsembleTask(LossTask):
    """Mean over members and outputs of the Gaussian NLL (in training with the beta-NLL weights) or
    the MSE, on standardised targets; a batch is (features, targets)."""

    def __init__(self, net: EnsembleMLP, loss: str, beta: float, learning_rate: float, weight_decay: float,
                 max_epochs: int):
        super().__init__(net, learning_rate, weight_decay, max_epochs)
        self.loss_name, self.beta = loss, beta

    def loss(self, batch) -> torch.Tensor:
        x, y = batch
        mean, log_var = self.net(x)
        if self.loss_name == "mse":
            return ((mean - y) ** 2).mean()
        variance = log_var.exp()
        nll = 0.5 * (log_var + (mean - y) ** 2 / variance)
        # beta-NLL reweights the training gradients only; validation (early stopping) scores the NLL itself.
        return (nll * variance.detach() ** self.beta).mean() if self.beta and self.training else nll.mean()


class MLPSpectrumHead(SpectrumHead):
    name = "mlp"

    def __init__(self, *, hidden_layers: int = 2, width: int = 64, n_members: int = 5, dropout: float = 0.0,
                 loss: str = "nll", beta: float = 0.5, learning_rate: float = 3e-3, weight_decay: float = 1e-4,
                 batch_size: int = 256, max_epochs: int = 100, patience: int = 10, seed: int = 0):
        self.hidden_layers = hidden_layers
        self.width = width
        self.n_members = n_members
        self.dropout = dropout
        self.loss = loss
        self.beta = beta
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.seed = seed

    @one_thread()
    def fit(self, X_train, Y_train, X_val=None, Y_val=None) -> MLPSpectrumHead:
        """Train the ensemble on standardised inputs and outputs; with a validation split, early-stop on
        its loss (mean over members) and keep the best epoch."""
        if self.loss not in ("nll", "mse"):
            raise GalaxypropError(f"loss must be 'nll' or 'mse', got {self.loss!r}")
        X_train = check_features(X_train)
        Y_train = _check_targets(Y_train, len(X_train))
        L.seed_everything(self.seed, verbose=False)
        self.scaler_ = make_scaler("standard").fit(X_train)
        self.target_mean_ = Y_train.mean(axis=0)
        scale = Y_train.std(axis=0)
        self.target_scale_ = np.where(scale > 0, scale, 1.0)
        self.n_features_, self.n_outputs_ = X_train.shape[1], Y_train.shape[1]

        def dataset(X, Y):
            x = self.scaler_.transform(X).astype(np.float32)
            y = ((Y - self.target_mean_) / self.target_scale_).astype(np.float32)
            return TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

        net = EnsembleMLP(self.n_members, self.n_features_, self.n_outputs_, self.hidden_layers, self.width,
                          self.dropout, self.seed)
        task = EnsembleTask(net, self.loss, self.beta, self.learning_rate, self.weight_decay, self.max_epochs)
        train = DataLoader(dataset(X_train, Y_train), batch_size=self.batch_size, shuffle=True,
                           generator=torch.Generator().manual_seed(self.seed))
        val = None
        if X_val is not None and Y_val is not None:
            X_val = check_features(X_val, self.n_features_)
            val = DataLoader(dataset(X_val, _check_targets(Y_val, len(X_val), self.n_outputs_)),
                             batch_size=PREDICT_BATCH)
        best = train_task(task, train, val, max_epochs=self.max_epochs, patience=self.patience)
        self.net_ = net
        self.history_, self.best_epoch_ = best.history, best.best_epoch
        return self

    @one_thread()
    def _members(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Member means and variances (M, N, m) in target units."""
        X = check_features(X, self.n_features_)
        x = torch.from_numpy(self.scaler_.transform(X).astype(np.float32))
        net = self.net_.eval()
        means, variances = [], []
        with torch.inference_mode():
            for start in range(0, len(x), PREDICT_BATCH):
                mean, log_var = net(x[start:start + PREDICT_BATCH])
                means.append(mean.numpy())
                variances.append(log_var.exp().numpy())
        mean = np.concatenate(means, axis=1).astype(float) * self.target_scale_ + self.target_mean_
        variance = np.concatenate(variances, axis=1).astype(float) * self.target_scale_**2
        if self.loss == "mse":         # no aleatoric term: the members' disagreement alone
            variance = np.zeros_like(variance)
        return mean, variance

    def predict(self, X):
        mean, variance = self._members(X)
        centre = mean.mean(axis=0)
        return centre, np.sqrt(variance.mean(axis=0) + mean.var(axis=0))

    def sample(self, X, n, rng):
        mean, variance = self._members(X)
        member = rng.integers(0, len(mean), size=(n, mean.shape[1]))
        galaxy = np.arange(mean.shape[1])[None, :]
        return mean[member, galaxy] + np.sqrt(variance[member, galaxy]) * rng.standard_normal(
            (n, mean.shape[1], mean.shape[2]))


HEADS = {"knn": KNNSpectrumHead, "mlp": MLPSpectrumHead}
assert tuple(HEADS) == SPECTRUM_HEADS, "spectra.names.SPECTRUM_HEADS names the heads params may list"


def make_spectrum_head(name: str, **hyperparameters) -> SpectrumHead:
    """A spectrum head by name ('knn', 'mlp') with its hyperparameters."""
    if name not in HEADS:
        raise GalaxypropError(f"unknown spectrum head '{name}'; choose from {sorted(HEADS)}")
    try:
        return HEADS[name](**hyperparameters)
    except TypeError as err:
        raise GalaxypropError(f"spectrum head '{name}': bad hyperparameters ({err})") from None
