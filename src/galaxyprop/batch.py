"""Batch prediction over a file of any size: chunks in, Parquet keyed by TARGETID out.

Memory stays constant (one chunk of inputs and predictions at a time). Each chunk's predictions
are written atomically as a part file next to the output, so an interrupted run resumes where it
stopped; the parts are merged into the output at the end, streamed row group by row group.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from galaxyprop.data.io import atomic_path, write_json, write_parquet
from galaxyprop.errors import GalaxypropError, reading
from galaxyprop.serving import input_error

KEY = "TARGETID"
FIELD_COLUMN = "PHOTSYS"
ID_COLUMNS = ("TARGETID", "targetid", "id", "ID", "objid", "OBJID")
Loader = Callable[[], tuple[np.ndarray, "np.ndarray | pd.DataFrame"]]


@dataclass(frozen=True)
class ModelInput:
    """What a registered model takes, read from its signature: catalogue `columns`, or an array
    of `shape` (images (−1, 3, H, W), spectra (−1, 7781), embeddings (−1, d))."""

    columns: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()

    @classmethod
    def of(cls, model) -> "ModelInput":
        schema = model.metadata.get_input_schema()
        if schema is None:
            raise GalaxypropError("the model has no input signature")
        if schema.is_tensor_spec():
            return cls(shape=tuple(int(s) for s in schema.inputs[0].shape))
        return cls(columns=tuple(schema.required_input_names()))


def _hdf5_chunks(path: Path, need: ModelInput, size: int) -> tuple[int, Iterator[tuple[int, Loader]]]:
    from galaxyprop.data.astroclip_hdf5 import N_SPECTRUM_PIXELS, AstroclipFile

    if need.columns:
        raise GalaxypropError(f"{path}: the model takes catalogue columns {list(need.columns)}, not an "
                              "image file; give it a catalogue (.parquet, .fits, .csv)")
    if len(need.shape) == 2 and need.shape[1] != N_SPECTRUM_PIXELS:
        raise GalaxypropError(f"{path}: the model takes embeddings of shape {need.shape}; give them as a "
                              "catalogue with columns e000, e001, ...")
    file = AstroclipFile(path)

    def chunks():
        with file:
            for start in range(0, file.n_rows, size):
                rows = np.arange(start, min(start + size, file.n_rows))

                def load(rows=rows):
                    ids = np.asarray(file.handle["targetids"][rows[0]:rows[-1] + 1])
                    inputs = file.cutouts(rows) if len(need.shape) == 4 else file.spectra(rows)[0]
                    return ids, np.ascontiguousarray(inputs, dtype=np.float32)
                yield start, load
    return file.n_rows, chunks()


class CatalogueFile:
    """A catalogue file read `size` rows of some columns at a time (Parquet, FITS or CSV)."""

    def __init__(self, path: Path):
        self.path, self.suffix = path, path.suffix.lower()
        with reading(path, "catalogue file"):
            if self.suffix in (".parquet", ".pq"):
                self.file = pq.ParquetFile(path)
                self.names, self.n_rows = self.file.schema_arrow.names, self.file.metadata.num_rows
            elif self.suffix == ".csv":
                self.names = list(pd.read_csv(path, nrows=0).columns)
                self.n_rows = sum(len(c) for c in pd.read_csv(path, usecols=self.names[:1], chunksize=1 << 20))
            elif self.suffix in (".fits", ".fit"):
                from astropy.io import fits

                with fits.open(path, memmap=True) as hdul:
                    table = next((h for h in hdul if isinstance(h, fits.BinTableHDU)), None)
                    if table is None:
                        raise GalaxypropError(f"{path}: no binary table HDU")
                    self.names, self.n_rows = list(table.columns.names), int(table.header["NAXIS2"])
            else:
                raise GalaxypropError(f"{path}: unsupported input format '{self.suffix}' "
                                      "(use .h5 in the AstroCLIP layout, .parquet, .fits or .csv)")
        self.by_lower = {n.lower(): n for n in self.names}

    def find(self, wanted: list[str], needed_by: str = "the model") -> list[str]:
        """The file's names of the `wanted` columns, matched case-insensitively."""
        missing = [c for c in wanted if c.lower() not in self.by_lower]
        if missing:
            raise GalaxypropError(f"{self.path}: lacks column(s) {missing} that {needed_by} needs; "
                                  f"it has {self.names[:20]}")
        return [self.by_lower[c.lower()] for c in wanted]

    def read(self, columns: list[str]) -> pd.DataFrame:
        """These columns of every row."""
        parts = list(self.batches(columns, 1 << 20))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    def batches(self, columns: list[str], size: int) -> Iterator[pd.DataFrame]:
        if self.suffix in (".parquet", ".pq"):
            yield from (b.to_pandas() for b in self.file.iter_batches(batch_size=size, columns=columns))
        elif self.suffix == ".csv":
            yield from pd.read_csv(self.path, usecols=columns, chunksize=size)
        else:
            from astropy.io import fits

            with fits.open(self.path, memmap=True) as hdul:
                data = next(h for h in hdul if isinstance(h, fits.BinTableHDU)).data
                for start in range(0, self.n_rows, size):
                    rows = data[start:start + size]
                    yield pd.DataFrame({c: np.asarray(rows[c]).astype(rows[c].dtype.newbyteorder("="))
                                        for c in columns})


def _catalogue_chunks(path: Path, need: ModelInput, size: int) -> tuple[int, Iterator[tuple[int, Loader]]]:
    from galaxyprop.data.astroclip_hdf5 import N_SPECTRUM_PIXELS
    from galaxyprop.features.embedding import embedding_names

    if len(need.shape) == 4 or (len(need.shape) == 2 and need.shape[1] == N_SPECTRUM_PIXELS):
        raise GalaxypropError(f"{path}: the model takes image cutouts or spectra; "
                              "give it an AstroCLIP-layout HDF5 file")
    table = CatalogueFile(path)
    id_column = next((c for c in ID_COLUMNS if c in table.names), None)
    if id_column is None:
        raise GalaxypropError(f"{path}: no id column (one of {list(ID_COLUMNS)})")
    features = list(need.columns) if need.columns else embedding_names(need.shape[1])
    source = table.find(features)
    # A catalogue model takes each row's survey field (its calibration) from a PHOTSYS column.
    field = table.by_lower.get(FIELD_COLUMN.lower()) if need.columns else None

    def chunks():
        start = 0
        for batch in table.batches([id_column, *source, *([field] if field else [])], size):
            def load(batch=batch):
                inputs = batch[source].set_axis(features, axis=1)
                if field:
                    inputs[FIELD_COLUMN] = batch[field].astype(str).str.strip().to_numpy()
                return batch[id_column].to_numpy(), inputs if need.columns else inputs.to_numpy(np.float32)
            yield start, load
            start += len(batch)
    return table.n_rows, chunks()


def input_chunks(path: str | Path, need: ModelInput, size: int) -> tuple[int, Iterator[tuple[int, Loader]]]:
    """(number of rows, lazy chunks `(first row, loader)`) of an AstroCLIP HDF5 file or a catalogue."""
    path = Path(path)
    if not path.exists():
        raise GalaxypropError(f"{path}: input file not found")
    if path.suffix.lower() in (".h5", ".hdf5"):
        return _hdf5_chunks(path, need, size)
    return _catalogue_chunks(path, need, size)


@dataclass(frozen=True)
class Manifest:
    """What the part files were computed from; a resume must match it."""

    model_uri: str
    input: str
    input_bytes: int
    chunk_size: int
    densities: bool
    photsys: str | None = None


def _parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _check_manifest(parts: Path, manifest: Manifest, restart: bool) -> None:
    path = parts / "manifest.json"
    if parts.exists() and (restart or not path.exists()):
        shutil.rmtree(parts)
    if path.exists():
        recorded = json.loads(path.read_text())
        if recorded != asdict(manifest):
            changed = sorted(k for k in recorded if recorded[k] != asdict(manifest).get(k))
            raise GalaxypropError(f"{parts}: partial results from another run (different {changed}); "
                                  "pass --restart to discard them")
    parts.mkdir(parents=True, exist_ok=True)
    write_json(asdict(manifest), path)


def predict_file(model, model_uri: str, input_path: str | Path, output: str | Path, chunk_size: int = 4096,
                 densities: bool = False, restart: bool = False, progress: bool = True,
                 photsys: str | None = None) -> int:
    """Predict every row of `input_path` with the pyfunc `model`, writing Parquet `output` with
    TARGETID, prediction, spread, q02, q16, q50, q84, q98 (and the density when asked); return the
    row count. `photsys` names the survey field of every row (its calibration), where a catalogue's
    PHOTSYS column does not."""
    if chunk_size < 1:
        raise GalaxypropError(f"chunk size must be positive, got {chunk_size}")
    input_path, output = Path(input_path), Path(output)
    need = ModelInput.of(model)
    n_rows, chunks = input_chunks(input_path, need, chunk_size)
    parts = _parts_dir(output)
    if photsys is not None:
        from galaxyprop.data.schema import field_code

        photsys = field_code(photsys)
    _check_manifest(parts, Manifest(model_uri, str(input_path.resolve()), input_path.stat().st_size,
                                    chunk_size, densities, photsys), restart)
    done = 0
    with tqdm(total=n_rows, desc=f"predict {input_path.name}", unit="galaxy", disable=not progress) as bar:
        for start, load in chunks:
            part = parts / f"part-{start:012d}.parquet"
            if not part.exists():
                ids, inputs = load()
                try:
                    predicted = model.predict(inputs, params={"photsys": photsys} if photsys else None)
                except Exception as error:
                    message = input_error(error)
                    if message is None:
                        raise
                    raise GalaxypropError(f"{input_path}: rows {start}-{start + len(ids) - 1}: {message}") from None
                if not densities:
                    predicted = predicted.drop(columns=["density"], errors="ignore")
                predicted.insert(0, KEY, ids)
                write_parquet(predicted, part)
                rows = len(ids)
            else:
                rows = pq.ParquetFile(part).metadata.num_rows
            done += rows
            bar.update(rows)
    _merge(sorted(parts.glob("part-*.parquet")), output)
    shutil.rmtree(parts)
    return done


def _merge(parts: list[Path], output: Path) -> None:
    """Concatenate the part files into `output`, one part in memory at a time, atomically."""
    if not parts:
        raise GalaxypropError("the input has no rows")
    schema = pq.ParquetFile(parts[0]).schema_arrow.remove_metadata()
    with atomic_path(output) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                writer.write_table(pq.read_table(part).cast(schema))
