"""Image-spectrum pairs from an AstroCLIP-layout file, read a batch at a time (the file may not fit
in memory), checked, and served to Lightning. Across processes (DDP) each global batch is split into
equal contiguous slices, one per process (`GlobalBatchSampler`): gathered again in rank order they are
the global batch InfoNCE is computed on, the same size as in one process."""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

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


class GlobalBatchSampler(Sampler[list[int]]):
    """This process's slice of each global batch of `global_batch` rows, the same number of batches and
    rows on every process (what gathering the embeddings needs). Training: a new permutation each epoch
    from one seeded generator (the same on every process), incomplete last batch dropped; evaluation: the
    rows in order, the last global batch cut to a multiple of `world_size` (at most world_size - 1 rows
    left out)."""

    def __init__(self, n: int, global_batch: int, rank: int, world_size: int, shuffle: bool, seed: int = 0):
        if global_batch % world_size:
            raise GalaxypropError(f"batches of {global_batch} do not split over {world_size} processes")
        self.n, self.global_batch, self.rank, self.world_size, self.shuffle = n, global_batch, rank, world_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def _global_batches(self) -> list[np.ndarray]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).numpy()
            return [order[i:i + self.global_batch] for i in range(0, self.n - self.global_batch + 1, self.global_batch)]
        batches = [np.arange(i, min(i + self.global_batch, self.n)) for i in range(0, self.n, self.global_batch)]
        cut = [b[:len(b) // self.world_size * self.world_size] for b in batches]
        return [b for b in cut if len(b)]

    def __iter__(self):
        for batch in self._global_batches():
            size = len(batch) // self.world_size
            yield batch[self.rank * size:(self.rank + 1) * size].tolist()

    def __len__(self) -> int:
        if self.shuffle:
            return self.n // self.global_batch
        return len(self._global_batches())


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
        """This process's slices of the global batches (the whole batches in one process); under DDP the
        trainer runs with use_distributed_sampler=False: the split over processes is the sampler's."""
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        sampler = GlobalBatchSampler(len(self.datasets[split]), self.batch_size, rank, world, shuffle, self.seed)
        return DataLoader(self.datasets[split], batch_sampler=sampler, collate_fn=_batched,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)   # whole batches: InfoNCE wants a fixed batch size

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
