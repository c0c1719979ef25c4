"""Write a flat AstroCLIP file (e.g. the mock survey's) again in the other published layouts, with the
real names, shapes and dtypes: the grouped release HDF5 and HuggingFace-style Parquet shards.

Row order is kept: groups and shards are consecutive runs of the flat file's rows (train shards
before test shards), so a reader's global row r is the flat file's row r.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATASETS = ("images", "spectra", "redshifts", "targetids")


def _flat(flat_path: str | os.PathLike) -> dict[str, np.ndarray]:
    with h5py.File(flat_path, "r") as handle:
        return {k: handle[k][:] for k in DATASETS}


def write_grouped(flat_path: str | os.PathLike, out: str | os.PathLike, lengths: list[int],
                  names: list[str] | None = None, compression: str | None = None,
                  string_ids: bool = False) -> Path:
    """The flat file's rows as groups of `lengths` rows (in order; they must sum to its length) named
    `names` (default "0", "1", ...), each with images / spectra / redshifts / targetids like
    astroclip_desi.1.1.5.h5 (no spectra_ivar). `string_ids`: store target ids as bytes."""
    data = _flat(flat_path)
    n = len(data["targetids"])
    if sum(lengths) != n:
        raise ValueError(f"group lengths {lengths} sum to {sum(lengths)}, the file has {n} rows")
    names = names or [str(i) for i in range(len(lengths))]
    bounds = np.r_[0, np.cumsum(lengths)]
    out = Path(out)
    with h5py.File(out, "w") as handle:
        for name, start, stop in zip(names, bounds[:-1], bounds[1:], strict=True):
            group = handle.create_group(name)
            for key in DATASETS:
                values = data[key][start:stop]
                if key == "targetids" and string_ids:
                    values = values.astype(str).astype("S")
                chunks = (1,) + values.shape[1:] if values.ndim > 1 and len(values) else None
                group.create_dataset(key, data=values, chunks=chunks,
                                     compression=compression if values.ndim > 1 else None)
    return out


class _HFArray(pa.ExtensionType):
    """HuggingFace datasets' ArrayXD extension type (same name, storage and serialisation), so the
    shards carry what `datasets` writes; without it registered, readers see the nested lists."""

    def __init__(self, shape: tuple, dtype: str, name: str):
        self.shape, self.value_type = tuple(shape), dtype
        storage = pa.from_numpy_dtype(np.dtype(dtype))
        for _ in shape:
            storage = pa.list_(storage)
        super().__init__(storage, f"datasets.features.features.{name}")

    def __arrow_ext_serialize__(self) -> bytes:
        return json.dumps((self.shape, self.value_type)).encode()

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        shape, dtype = json.loads(serialized)
        return cls(shape, dtype, "Array3DExtensionType" if len(shape) == 3 else "Array2DExtensionType")


def _nested(values: np.ndarray) -> pa.Array:
    """An (n, *shape) array as nested list<...<list<float>>> (HF's ArrayXD storage)."""
    array: pa.Array = pa.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        offsets = pa.array(np.arange(0, len(array) + 1, size, dtype=np.int32))
        array = pa.ListArray.from_arrays(offsets, array)
    return array


def _table(data: dict[str, np.ndarray], start: int, stop: int, hf_extension: bool) -> pa.Table:
    image = data["images"][start:stop].astype(np.float32)
    spectrum = data["spectra"][start:stop].astype(np.float32).reshape(stop - start, -1, 1)
    columns = {"image": _nested(image), "spectrum": _nested(spectrum)}
    if hf_extension:
        columns["image"] = pa.ExtensionArray.from_storage(
            _HFArray(image.shape[1:], "float32", "Array3DExtensionType"), columns["image"])
        columns["spectrum"] = pa.ExtensionArray.from_storage(
            _HFArray(spectrum.shape[1:], "float32", "Array2DExtensionType"), columns["spectrum"])
    columns["redshift"] = pa.array(data["redshifts"][start:stop].astype(np.float32))
    columns["targetid"] = pa.array(data["targetids"][start:stop].astype(np.int64))
    features = {"image": {"shape": list(image.shape[1:]), "dtype": "float32", "_type": "Array3D"},
                "spectrum": {"shape": list(spectrum.shape[1:]), "dtype": "float32", "_type": "Array2D"},
                "redshift": {"dtype": "float32", "_type": "Value"},
                "targetid": {"dtype": "int64", "_type": "Value"}}
    table = pa.table(columns)
    return table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})


def _register() -> None:
    for name, ndim in (("Array3DExtensionType", 3), ("Array2DExtensionType", 2)):
        with contextlib.suppress(pa.ArrowKeyError):   # registered already
            pa.register_extension_type(_HFArray((1,) * ndim, "float32", name))


def write_parquet_shards(flat_path: str | os.PathLike, out_dir: str | os.PathLike, n_train_shards: int = 2,
                         n_test_shards: int = 1, train_fraction: float = 0.8, row_group_size: int = 4,
                         subdir: str = "", hf_extension: bool = True) -> list[Path]:
    """The flat file's first int(train_fraction N) rows as `n_train_shards` train shards, the rest as
    `n_test_shards` test shards, named like HF's `train-00000-of-00002.parquet` in `out_dir/subdir`,
    with `row_group_size` rows per row group. Returns the shard paths, train first."""
    if hf_extension:
        _register()
    data = _flat(flat_path)
    n = len(data["targetids"])
    n_train = int(train_fraction * n)
    folder = Path(out_dir) / subdir
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, (first, last), count in (("train", (0, n_train), n_train_shards),
                                        ("test", (n_train, n), n_test_shards)):
        bounds = np.linspace(first, last, count + 1).round().astype(int)
        for i, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            path = folder / f"{split}-{i:05d}-of-{count:05d}.parquet"
            pq.write_table(_table(data, int(start), int(stop), hf_extension), path, row_group_size=row_group_size)
            paths.append(path)
    return paths
