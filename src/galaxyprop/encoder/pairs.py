"""Image-spectrum pairs from an AstroCLIP-layout file, read a batch at a time (the file may not fit
in memory), checked, and served to Lightning."""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from galaxyprop.data.astroclip import AstroclipFile
from galaxyprop.encoder.spectra import check_spectra
from galaxyprop.errors import GalaxypropError
from galaxyprop.features.images import channels_first


class PairDataset(Dataset):
    """Rows `rows` of an AstroCLIP file as (images (n, 3, H, W), spectra (n, 7781)) batches."""

    def __init__(self, path: str | os.PathLike, rows: np.ndarray, min_image_size: int = 1):
        self.path, self.rows, self.min_image_size = str(path), np.asarray(rows, np.int64), min_image_size
        self._file: AstroclipFile | None = None   # opened lazily, once per worker process

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._file is None:
            self._file = AstroclipFile(self.path)
        rows = self.rows[np.asarray(indices)]
        images = channels_first(self._file.images(rows), self.min_image_size, f"{self.path}: images", rows)
        spectra = check_spectra(self._file.spectra(rows)[0], f"{self.path}: spectra", rows)
        return torch.from_numpy(images), torch.from_numpy(spectra)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, spectra = self.__getitems__([index])
        return images[0], spectra[0]


def _batched(batch):
    """The dataset already returns whole batches."""
    return batch


class PairDataModule(L.LightningDataModule):
    """Train/val/test pairs given the file rows of each split."""

    def __init__(self, path: str | os.PathLike, rows: dict[str, np.ndarray], batch_size: int,
                 min_image_size: int = 1, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.datasets = {split: PairDataset(path, r, min_image_size) for split, r in rows.items()}
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        if len(self.datasets["train"]) < 2 * batch_size:
            raise GalaxypropError(f"{len(self.datasets['train'])} training pairs are too few for batches of "
                                  f"{batch_size}; lower encoder.training.batch_size")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, drop_last=shuffle,
                          collate_fn=_batched, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0,
                          generator=torch.Generator().manual_seed(self.seed) if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)   # whole batches: InfoNCE wants a fixed batch size

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
