"""Where the encoder trains: one device (Lightning's `auto`: the GPU when there is one), or `devices`
processes under DDP: NCCL with one GPU each where there are that many GPUs, gloo on CPU processes
otherwise. The processes are spawned (not forked: the stage's MLflow and database connections and the
CUDA context must not be shared), each takes batch_size / devices rows of every global batch
(`pairs.GlobalBatchSampler`) and the loss is computed on the gathered global batch
(`ContrastiveModel._gathered`): the same effective batch as one process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from galaxyprop.data.io import write_json
from galaxyprop.encoder.devices import check_devices


def placement(devices: int, batch_size: int) -> dict:
    """The Trainer's accelerator, devices and strategy for `devices` processes."""
    check_devices(devices, batch_size)
    if devices == 1:
        return {"accelerator": "auto", "devices": 1}
    import torch
    from lightning.pytorch.strategies import DDPStrategy

    gpu = torch.cuda.is_available()
    return {"accelerator": "gpu" if gpu else "cpu", "devices": devices, "use_distributed_sampler": False,
            "strategy": DDPStrategy(process_group_backend="nccl" if gpu else "gloo", start_method="spawn")}


def encoder_trainer(devices: int, batch_size: int, **kwargs) -> L.Trainer:
    """A Trainer on `placement(devices, batch_size)` with the stage's settings `kwargs`."""
    return L.Trainer(**placement(devices, batch_size), **kwargs)


class EpochHistory(Callback):
    """Per-epoch losses and wall time, for the loss-curve plot and the benchmark; also written to `path` by
    the first process (under DDP the training runs in spawned processes: `rows` come back through it)."""

    def __init__(self, path: Path):
        self.rows: list[dict] = []
        self.path = path
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics   # the epoch's validation has run by now
        if "val_loss" not in metrics:
            return
        self.rows.append({"epoch": trainer.current_epoch, "train_loss": float(metrics["train_loss"]),
                          "val_loss": float(metrics["val_loss"]), "seconds": time.perf_counter() - self._start})
        if trainer.is_global_zero:
            write_json(self.rows, self.path)

    def recorded(self) -> list[dict]:
        """The epochs, from whichever process trained."""
        return json.loads(self.path.read_text()) if self.path.exists() else self.rows
