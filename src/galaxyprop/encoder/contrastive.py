"""The AstroCLIP-style image-spectrum model: two encoders trained with the CLIP InfoNCE loss.

The LightningModule holds the encoders and the loss; `pairs.PairDataModule` holds the data; the
Trainer (`distributed.encoder_trainer`, in the pipeline stage) holds the loop. Under DDP each process
embeds its slice of the global batch and the embeddings are gathered (with their gradients) before the
loss, so every process computes InfoNCE over the whole global batch, as one process would.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import lightning as L
import torch
from torch.nn import functional as F

from galaxyprop.data.io import atomic_path
from galaxyprop.encoder.embedding import ImageEmbedder, SpectrumEmbedder
from galaxyprop.encoder.networks import ImageEncoder, SpectrumEncoder
from galaxyprop.encoder.spectra import normalise_spectra
from galaxyprop.errors import GalaxypropError
from galaxyprop.features.images import prepare_cutouts


@dataclass(frozen=True)
class EncoderConfig:
    """Every hyperparameter of the model (params.yaml `encoder.model`)."""

    embedding_dim: int = 128
    image_widths: tuple[int, ...] = (32, 64, 128)
    spectrum_widths: tuple[int, ...] = (16, 32, 64, 64)
    aperture_radii: tuple[float, ...] = ()   # px; empty: the CNN alone
    crop: int = 48                  # px of the stamp the encoder sees (AstroCLIP: 144 of 152)
    max_shift: int = 4              # px, augmentation
    softening: tuple[float, ...] = (1.0, 1.0, 1.0)   # nanomaggies/px of the asinh stretch
    spectrum_std_floor: float = 0.2
    logit_scale: float = 15.5       # AstroCLIP's fixed value
    learn_logit_scale: bool = False
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4

    @classmethod
    def from_params(cls, params: dict, **overrides) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise GalaxypropError(f"unknown encoder.model params {unknown}; known: {sorted(known)}")
        values = {**params, **overrides}
        for name in ("image_widths", "spectrum_widths", "softening", "aperture_radii"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


def clip_loss(image_embedding: torch.Tensor, spectrum_embedding: torch.Tensor,
              logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: each image must pick its own spectrum among the batch's, and vice versa."""
    logits = logit_scale * image_embedding @ spectrum_embedding.T
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


AUGMENTATION_STREAM = 1     # the augmentation's SeedSequence key beside the seed


class ContrastiveModel(L.LightningModule):
    """Image and spectrum encoders into one L2-normalised space, trained contrastively."""

    def __init__(self, config: dict, max_epochs: int = 30, seed: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.config = EncoderConfig.from_params(config)
        self.image_encoder = ImageEncoder(self.config.image_widths, self.config.embedding_dim,
                                          aperture_radii=self.config.aperture_radii)
        self.spectrum_encoder = SpectrumEncoder(self.config.spectrum_widths, self.config.embedding_dim)
        self.register_buffer("softening", torch.tensor(self.config.softening, dtype=torch.float32))
        scale = torch.tensor(float(self.config.logit_scale))
        if self.config.learn_logit_scale:
            self.log_logit_scale = torch.nn.Parameter(scale.log())
        else:
            self.register_buffer("log_logit_scale", scale.log())

    def on_train_start(self) -> None:
        """The augmentation's own stream from `seed`: the same draws in one process as over several. Not
        `seed` itself: the batch sampler's stream starts from it, and two generators on one seed give the
        same bits (each slot of a batch would get correlated transforms: measurably less learning)."""
        import numpy as np

        state = np.random.SeedSequence([int(self.hparams.seed), AUGMENTATION_STREAM]).generate_state(1)[0]
        self._augmentation = torch.Generator().manual_seed(int(state))

    def prepare_images(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        if not train:
            return prepare_cutouts(images, self.softening, self.config.crop)
        part = (self.trainer.global_rank, self.trainer.world_size) if self._trainer is not None else (0, 1)
        return prepare_cutouts(images, self.softening, self.config.crop, self.config.max_shift, True,
                               getattr(self, "_augmentation", None), part)

    def forward(self, images: torch.Tensor, spectra: torch.Tensor, train: bool = False):
        image_embedding = self.image_encoder(self.prepare_images(images, train))
        spectrum_embedding = self.spectrum_encoder(normalise_spectra(spectra, self.config.spectrum_std_floor))
        return image_embedding, spectrum_embedding

    def _gathered(self, embedding: torch.Tensor) -> torch.Tensor:
        """Every process's slice of the global batch in rank order (itself alone in one process). The
        gather's backward sums each slice's gradient over the processes (each computed the same loss)
        and DDP averages the parameters' gradients: the global batch's gradient, exactly."""
        if self._trainer is None or self.trainer.world_size == 1:
            return embedding
        return self.all_gather(embedding, sync_grads=True).reshape(-1, embedding.shape[-1])

    def _step(self, batch, stage: str) -> torch.Tensor:
        images, spectra = batch
        image_embedding, spectrum_embedding = (self._gathered(e) for e in self(images, spectra, train=stage == "train"))
        loss = clip_loss(image_embedding, spectrum_embedding, self.log_logit_scale.exp())
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(image_embedding),
                 sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.config.learning_rate,
                                      weight_decay=self.config.weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.hparams.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def image_embedder(self) -> ImageEmbedder:
        """The image half alone, on the CPU, for the embedding stage and the registered models."""
        return ImageEmbedder(self.image_encoder, self.softening.cpu(), self.config.crop)

    def spectrum_embedder(self) -> SpectrumEmbedder:
        return SpectrumEmbedder(self.spectrum_encoder, self.config.spectrum_std_floor)

    def save(self, path: str | os.PathLike) -> None:
        """The weights and config alone (no optimizer or trainer state), so equal models give equal files."""
        buffer = io.BytesIO()   # torch.save names the archive after the file: a buffer keeps it fixed
        torch.save({"config": asdict(self.config), "max_epochs": self.hparams.max_epochs,
                    "state_dict": self.state_dict()}, buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: str | os.PathLike) -> ContrastiveModel:
        """A model saved by `save`, on the CPU, in evaluation mode."""
        if not Path(path).exists():
            raise GalaxypropError(f"{path}: no trained encoder (run the train_encoder stage)")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(saved["config"], max_epochs=saved["max_epochs"])
        model.load_state_dict(saved["state_dict"])
        return model.eval()

    def describe(self) -> dict:
        return {**asdict(self.config), "n_parameters": sum(p.numel() for p in self.parameters())}
