"""Whether `encoder.training.devices` processes can train here (without importing torch's trainer: the
params check runs it before every stage and every command; torch itself only to count GPUs for several)."""

from __future__ import annotations

from galaxyprop.errors import GalaxypropError


def check_devices(devices: int, batch_size: int, gpus: int | None = None) -> None:
    """One line saying why `devices` processes cannot train on `batch_size`-row batches here."""
    if devices < 1:
        raise GalaxypropError(f"params encoder.training.devices must be at least 1, got {devices}")
    if batch_size % devices:
        raise GalaxypropError(f"params encoder.training.batch_size {batch_size} does not split over "
                              f"encoder.training.devices {devices} processes: make it a multiple")
    if devices == 1:            # one process runs anywhere: no need to import torch to count GPUs
        return
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if devices > 1 and 0 < gpus < devices:
        raise GalaxypropError(f"params encoder.training.devices {devices}: this machine has {gpus} GPU(s); "
                              f"use at most {gpus} (or 1)")
