"""Atomic writes: a failed stage never leaves a half-written output behind."""

from __future__ import annotations

import json
import os
import pickle
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from joblib.numpy_pickle import NumpyPickler

from galaxyprop.errors import GalaxypropError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_json(obj: object, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _tensor_from_array(array: np.ndarray, requires_grad: bool):
    import torch

    return torch.from_numpy(array).requires_grad_(requires_grad)


class _StablePickler(NumpyPickler):
    """joblib's pickler, with torch tensors stored as their numpy arrays: pickle stores a tensor's
    storage under its memory address (a new number in every process), an array by its bytes alone,
    so equal objects give equal files and a rerun leaves every DVC hash as it was."""

    def reducer_override(self, obj):
        torch = sys.modules.get("torch")
        if torch is not None and type(obj) is torch.Tensor and obj.layout == torch.strided:
            return _tensor_from_array, (obj.detach().cpu().numpy(), obj.requires_grad)
        return NotImplemented


def save_object(obj: object, path: str | os.PathLike) -> None:
    """Pickle a fitted object (head, predictor, feature encoder) atomically, byte-stable: the same
    object gives the same bytes in any process (`joblib.load` reads it)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        _StablePickler(handle, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)


def load_object(path: str | os.PathLike, kind: type):
    """Unpickle an object saved by `save_object`, checking that it is a `kind`."""
    if not Path(path).exists():
        raise GalaxypropError(f"{path}: file not found")
    obj = joblib.load(path)
    if not isinstance(obj, kind):
        raise GalaxypropError(f"{path}: not a galaxyprop {kind.__name__}")
    return obj
