"""The AstroCLIP Parquet shards, as HuggingFace `datasets` writes them: columns `image`
(Array3D (152, 152, 3) float32), `spectrum` (Array2D (7781, 1) float32), `redshift`, `targetid`;
Array features are nested list columns in Parquet. Shards are named like
`train-00000-of-00004.parquet` / `test-00000-of-00001.parquet`; the split comes from the name.

Given as one .parquet file, a glob (`/x/train-*.parquet`) or a folder of shards (searched
recursively, e.g. `data/train-...`). Rows are read a record batch at a time from the row groups that
hold them, never the whole set: memory is bounded by the row group, not the data set.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import numpy as np

from galaxyprop.data.astroclip.base import AstroclipFile, decode_ids, gather
from galaxyprop.data.astroclip.layout import COLUMNS, N_SPECTRUM_PIXELS
from galaxyprop.errors import GalaxypropError

SPLIT_NAMES = ("train", "test")
BATCH_ROWS = 64          # rows decoded at a time inside a row group


def shard_split(name: str) -> str | None:
    """'train' or 'test' from a shard's (relative) name, e.g. data/train-00000-of-00004.parquet."""
    tokens = re.split(r"[/\\_.\-]+", name.lower())
    for split in SPLIT_NAMES:
        if split in tokens:
            return split
    return None


def _order(name: str) -> tuple:
    split = shard_split(name)
    return (SPLIT_NAMES.index(split) if split else len(SPLIT_NAMES), name)


def shard_paths(path: str | os.PathLike) -> list[tuple[Path, str]]:
    """The shards `path` names (file, glob or folder) as (file, name) in reading order: train shards,
    then test shards, then any others, each by name. Names are relative to the folder / glob root."""
    text = str(path)
    if glob.has_magic(text):
        root_parts = []
        for part in Path(text).parts:
            if glob.has_magic(part):
                break
            root_parts.append(part)
        root = Path(*root_parts) if root_parts else Path(".")
        files = [Path(f) for f in glob.glob(text, recursive=True) if Path(f).is_file()]
        shards = [(f, os.path.relpath(f, root)) for f in files]
    elif Path(text).is_dir():
        root = Path(text)
        shards = [(f, f.relative_to(root).as_posix()) for f in root.rglob("*.parquet") if f.is_file()]
    elif Path(text).is_file():
        shards = [(Path(text), Path(text).name)]
    else:
        raise GalaxypropError(f"{path}: image/spectrum file not found")
    shards = [(f, n) for f, n in shards if not any(p.startswith(".") for p in Path(n).parts)]
    if not shards:
        raise GalaxypropError(f"{path}: no Parquet shards matched")
    return sorted(shards, key=lambda s: _order(s[1]))


def nested_to_numpy(array, where: str) -> np.ndarray:
    """A (nested) list column as an (n, *shape) array; every row must have the same shape."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    n, dims = len(array), []
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type) \
            or pa.types.is_fixed_size_list(array.type):
        if array.null_count:
            raise GalaxypropError(f"{where}: missing (null) values")
        lengths = pc.list_value_length(array)
        low, high = pc.min_max(lengths).values() if len(lengths) else (None, None)
        if low is None:
            dims.append(0)
        elif low.as_py() != high.as_py():
            raise GalaxypropError(f"{where}: rows differ in shape ({low.as_py()} to {high.as_py()} values)")
        else:
            dims.append(low.as_py())
        array = array.flatten()
        if isinstance(array.type, pa.ExtensionType):
            array = array.storage
    if array.null_count:
        raise GalaxypropError(f"{where}: missing (null) values")
    return array.to_numpy(zero_copy_only=False).reshape((n, *dims))


class ParquetShards(AstroclipFile):
    """A set of Parquet shards read as one table (shards in `shard_paths` order)."""

    layout = "parquet"

    def __init__(self, path: str | os.PathLike):
        import pyarrow.parquet as pq

        self.path = Path(path)
        shards = shard_paths(path)
        self.shard_files = [f for f, _ in shards]
        self.shard_names = [n for _, n in shards]
        self.files, lengths, self.row_groups = [], [], []
        try:
            for file in self.shard_files:
                try:
                    handle = pq.ParquetFile(file)
                except Exception as err:
                    raise GalaxypropError(f"{file}: not a readable Parquet file "
                                          f"({(str(err).splitlines() or [''])[0]})") from None
                self.files.append(handle)
                names = handle.schema_arrow.names
                missing = [c for c in COLUMNS.values() if c not in names]
                if missing:
                    raise GalaxypropError(f"{file}: missing columns {missing} "
                                          f"(AstroCLIP Parquet layout needs {list(COLUMNS.values())})")
                meta = handle.metadata
                lengths.append(meta.num_rows)
                self.row_groups.append(np.r_[0, np.cumsum([meta.row_group(i).num_rows
                                                           for i in range(meta.num_row_groups)])])
            self.offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
            self.n_rows = int(self.offsets[-1])
            self._check_shapes()
        except GalaxypropError:
            self.close()
            raise

    def _check_shapes(self) -> None:
        """The first row of every shard has an image (H, W, 3) of one stamp and a 7781-pixel spectrum."""
        stamps = {}
        for part, name in enumerate(self.shard_names):
            if self.offsets[part + 1] == self.offsets[part]:
                continue
            image = self._column(part, "image", np.array([0]))
            spectrum = self._column(part, "spectrum", np.array([0]))
            where = self.shard_files[part]
            if image.ndim != 4 or image.shape[-1] != 3:
                raise GalaxypropError(f"{where}: 'image' has shape {image.shape[1:]}, expected (H, W, 3)")
            if spectrum.size != N_SPECTRUM_PIXELS:
                raise GalaxypropError(f"{where}: 'spectrum' has shape {spectrum.shape[1:]}, "
                                      f"expected ({N_SPECTRUM_PIXELS}, 1)")
            stamps[name] = image.shape[1:]
        if len(set(stamps.values())) > 1:
            raise GalaxypropError(f"{self.path}: shards have different image shapes {stamps}")
        self.stamp = next(iter(stamps.values()), None)

    def _column(self, part: int, column: str, local: np.ndarray) -> np.ndarray:
        """Rows `local` (in-shard, any order) of one column of one shard, batch by batch."""
        import pyarrow as pa

        unique, inverse = np.unique(local, return_inverse=True)
        bounds = self.row_groups[part]
        group_of = np.searchsorted(bounds, unique, side="right") - 1
        pieces = []
        where = self.shard_files[part]
        try:
            for group in np.unique(group_of):
                wanted = unique[group_of == group] - bounds[group]
                start = 0
                for batch in self.files[part].iter_batches(batch_size=BATCH_ROWS, row_groups=[int(group)],
                                                           columns=[column], use_threads=False):
                    stop = start + batch.num_rows
                    take = wanted[(wanted >= start) & (wanted < stop)] - start
                    if len(take):
                        pieces.append(batch.column(0).take(pa.array(take)))
                    start = stop
                    if start > wanted[-1]:
                        break
        except GalaxypropError:
            raise
        except Exception as err:
            a, b = self.offsets[part] + unique[0], self.offsets[part] + unique[-1]
            raise GalaxypropError(f"{where}: rows {a}-{b} (shard {self.shard_names[part]}) unreadable "
                                  f"('{column}': {type(err).__name__}: {(str(err).splitlines() or [''])[0]})") from None
        if not pieces:
            raise GalaxypropError(f"{where}: rows {unique[0]}-{unique[-1]} not found in the shard")
        array = pa.concat_arrays([p.storage if isinstance(p.type, pa.ExtensionType) else p for p in pieces])
        if column in ("image", "spectrum"):
            values = nested_to_numpy(array, f"{where}: column '{column}'")
        else:
            values = array.to_numpy(zero_copy_only=False)
        if len(values) != len(unique):
            raise GalaxypropError(f"{where}: rows {unique[0]}-{unique[-1]} not found in the shard")
        return values[inverse]

    def _read(self, column: str, rows: np.ndarray, empty: np.ndarray) -> np.ndarray:
        return gather(rows, self.offsets, lambda part, local, _: self._column(part, column, local), empty)

    def index(self) -> tuple[np.ndarray, np.ndarray]:
        ids, redshifts = [], []
        for part, handle in enumerate(self.files):
            try:
                for batch in handle.iter_batches(batch_size=65536, columns=["targetid", "redshift"]):
                    ids.append(batch.column(0).to_numpy(zero_copy_only=False))
                    redshifts.append(batch.column(1).to_numpy(zero_copy_only=False))
            except Exception as err:
                raise GalaxypropError(f"{self.shard_files[part]}: 'targetid'/'redshift' unreadable "
                                      f"({type(err).__name__}: {(str(err).splitlines() or [''])[0]})") from None
        if not ids:
            return np.array([], np.int64), np.array([], float)
        return decode_ids(np.concatenate(ids)), np.concatenate(redshifts).astype(float)

    def ids(self, rows: np.ndarray) -> np.ndarray:
        return decode_ids(self._read("targetid", self._rows(rows), np.array([], np.int64)))

    def images(self, rows: np.ndarray) -> np.ndarray:
        stamp = self.stamp or (0, 0, 3)
        return self._read("image", self._rows(rows), np.empty((0, *stamp), np.float32))

    def spectra(self, rows: np.ndarray) -> tuple[np.ndarray, None]:
        rows = self._rows(rows)
        flux = self._read("spectrum", rows, np.empty((0, N_SPECTRUM_PIXELS), np.float32))
        return flux.reshape(len(rows), N_SPECTRUM_PIXELS), None

    def origin(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(rows)
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        return np.asarray(self.shard_names, dtype=object)[part], rows - self.offsets[part]

    def file_split(self) -> np.ndarray | None:
        splits = [shard_split(n) for n in self.shard_names]
        if None in splits:
            return None
        return np.repeat(np.asarray(splits, dtype=object), np.diff(self.offsets))

    def close(self) -> None:
        for handle in self.files:
            handle.close()
        self.files = []
