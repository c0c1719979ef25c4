"""Trained encoders as feature encoders: images (or spectra) in, embedding matrix out.

The embedding stage and the registered models call the same `transform`, so what is served is what
the heads were trained on.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod

import numpy as np
import torch
from tqdm.auto import tqdm

from galaxyprop.data.schema import embedding_names
from galaxyprop.encoder.spectra import check_spectra, normalise_spectra
from galaxyprop.features.images import channels_first, prepare_cutouts


class _Embedder(ABC):
    """Batched, gradient-free inference of one frozen encoder on the CPU (or a given device)."""

    input_kind: str

    def __init__(self, encoder: torch.nn.Module):
        self.encoder = copy.deepcopy(encoder).cpu().eval()
        self.dim = int(self.encoder.project[-1].out_features)

    @property
    def names(self) -> list[str]:
        return embedding_names(self.dim)

    @abstractmethod
    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """The encoder's input from a batch of checked inputs (stretch, crop, normalisation)."""

    @abstractmethod
    def _check(self, inputs: np.ndarray) -> np.ndarray:
        """The inputs as a contiguous float32 array, or a clear error for a bad shape or value."""

    def transform(self, inputs: np.ndarray, batch_size: int = 256, progress: bool = False,
                  device: str | torch.device = "cpu") -> np.ndarray:
        """Embeddings (n, dim) float32 of `inputs`, in batches, with no gradient."""
        inputs = self._check(inputs)
        encoder = self.encoder.to(device)
        out = np.empty((len(inputs), self.dim), np.float32)
        starts = range(0, len(inputs), batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc=f"embed {self.input_kind}", unit="batch", disable=not progress):
                batch = torch.from_numpy(inputs[start:start + batch_size]).to(device)
                out[start:start + batch_size] = encoder(self._prepare(batch)).cpu().numpy()
        self.encoder = encoder.cpu()
        return out


class ImageEmbedder(_Embedder):
    """g,r,z cutouts in nanomaggies/pixel, (N, H, W, 3) or (N, 3, H, W), to image embeddings."""

    input_kind = "images"

    def __init__(self, encoder: torch.nn.Module, softening: torch.Tensor, crop: int):
        super().__init__(encoder)
        self.softening = softening.detach().cpu().clone()
        self.crop = int(crop)

    def _check(self, inputs: np.ndarray) -> np.ndarray:
        return channels_first(inputs, min_size=self.crop)

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return prepare_cutouts(batch, self.softening, self.crop)


class SpectrumEmbedder(_Embedder):
    """Spectra on the DESI grid, (N, 7781) or (N, 7781, 1), to spectrum embeddings."""

    input_kind = "spectra"

    def __init__(self, encoder: torch.nn.Module, std_floor: float):
        super().__init__(encoder)
        self.std_floor = float(std_floor)

    def _check(self, inputs: np.ndarray) -> np.ndarray:
        return check_spectra(inputs)

    def _prepare(self, batch: torch.Tensor) -> torch.Tensor:
        return normalise_spectra(batch, self.std_floor)
