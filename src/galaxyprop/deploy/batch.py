"""Batch prediction over a file of any size: chunks in, Parquet keyed by TARGETID out.

Memory stays constant (one chunk of inputs and predictions at a time). Each chunk's predictions
are written atomically as a part file next to the output, so an interrupted run resumes where it
stopped; the parts are merged into the output at the end, streamed row group by row group.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from galaxyprop.data import schema
from galaxyprop.data.catalog import CatalogSpec, mapped_batches
from galaxyprop.data.catalogue_file import ID_COLUMNS, CatalogueFile, as_numbers
from galaxyprop.data.io import atomic_path, write_json, write_parquet
from galaxyprop.data.schema import normalise_ids
from galaxyprop.errors import GalaxypropError
from galaxyprop.registry.predictor import DENSITY_COLUMN
from galaxyprop.registry.serving import CUTOUTS, FLUXES, input_error

KEY = "TARGETID"
FIELD_COLUMN = "PHOTSYS"
#: The prediction file's schema metadata key holding `describe_output`'s JSON.
OUTPUT_METADATA = b"galaxyprop"
#: A chunk's loader: (its keys: TARGETID and, for AstroCLIP files in groups or shards, where each row
#: lies in the file; the model's inputs).
Loader = Callable[[], tuple[pd.DataFrame, "np.ndarray | pd.DataFrame"]]


@dataclass(frozen=True)
class ModelInput:
    """What a registered model takes, read from its signature: catalogue `columns`, an array of
    `shape` (images (−1, 3, H, W), spectra (−1, 7781), embeddings (−1, d)), or (a multimodal model)
    cutouts of `shape` and the catalogue's `flux_columns` as two named tensors."""

    columns: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    flux_columns: tuple[str, ...] = ()

    @property
    def multimodal(self) -> bool:
        return bool(self.flux_columns)

    @classmethod
    def of(cls, model) -> ModelInput:
        schema = model.metadata.get_input_schema()
        if schema is None:
            raise GalaxypropError("the model has no input signature")
        if schema.is_tensor_spec():
            named = {spec.name: tuple(int(s) for s in spec.shape) for spec in schema.inputs}
            if CUTOUTS in named and FLUXES in named:
                return cls(shape=named[CUTOUTS], flux_columns=tuple((model.metadata.metadata or {})["flux_columns"]))
            return cls(shape=tuple(int(s) for s in schema.inputs[0].shape))
        return cls(columns=tuple(schema.required_input_names()))

    def tensors(self, cutouts: np.ndarray, catalogue: pd.DataFrame) -> dict[str, np.ndarray]:
        """A multimodal model's two inputs for the same galaxies, row for row."""
        return {CUTOUTS: np.ascontiguousarray(cutouts, dtype=np.float32),
                FLUXES: np.ascontiguousarray(catalogue[list(self.flux_columns)].to_numpy(), dtype=np.float32)}


def catalogue_fluxes(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """The flux `columns` (and PHOTSYS where there is one) of every row of a catalogue, indexed by
    TARGETID: a FastSpecFit file (its METADATA fluxes, Galactic extinction removed) or any catalogue
    with the columns (any case)."""
    from galaxyprop.data.desi import fastspec_fluxes
    from galaxyprop.data.fastspecfit import is_fastspec

    fastspec = is_fastspec(path)
    if fastspec:
        table = fastspec_fluxes(path).rename(columns={schema.ID: KEY, schema.PHOTSYS: FIELD_COLUMN})
    else:
        file = CatalogueFile(path)
        id_column = file.id_column()
        if id_column is None:
            raise GalaxypropError(f"{path}: no id column (one of {list(ID_COLUMNS)})")
        field = file.by_lower.get(FIELD_COLUMN.lower())
        found = file.find(list(columns))
        table = file.read([id_column, *found, *([field] if field else [])], text=(id_column,))
        table = table.rename(columns={id_column: KEY, **dict(zip(found, columns, strict=True)),
                                      **({field: FIELD_COLUMN} if field else {})})
        table = as_numbers(table, dict(zip(columns, found, strict=True)), path)
        table[KEY] = normalise_ids(table[KEY].to_numpy(), f"{path}: id column '{id_column}'")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise GalaxypropError(f"{path}: no columns {missing}, which the model takes"
                              + (" (FastSpecFit METADATA)" if fastspec else ""))
    if table[KEY].duplicated().any():
        raise GalaxypropError(f"{path}: TARGETID {table[KEY][table[KEY].duplicated()].iloc[0]} appears twice")
    keep = [c for c in (*columns, FIELD_COLUMN) if c in table.columns]
    return table.set_index(KEY)[keep]


def _hdf5_chunks(path: Path, need: ModelInput, size: int, catalogue: Path | None = None,
                 dropped: Counter | None = None) -> tuple[int, Iterator[tuple[int, Loader]]]:
    """Chunks of an AstroCLIP file; for a multimodal model each cutout joined with its `catalogue` row
    by TARGETID (rows without one are skipped and counted in `dropped`)."""
    from galaxyprop.data.astroclip import N_SPECTRUM_PIXELS, AstroclipFile
    from galaxyprop.data.desi import IMAGE_GROUP, IMAGE_GROUP_ROW

    if need.multimodal and catalogue is None:
        raise GalaxypropError(f"{path}: the model takes the cutouts and the catalogue fluxes "
                              f"{list(need.flux_columns)} together: give the catalogue too (--catalogue)")
    fluxes = catalogue_fluxes(catalogue, need.flux_columns) if need.multimodal else None
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
                    keys = pd.DataFrame({KEY: normalise_ids(file.ids(rows), f"{path}: targetids (rows "
                                                                           f"{rows[0]}-{rows[-1]})")})
                    if file.layout != "flat":                  # so that each prediction traces back
                        keys[IMAGE_GROUP], keys[IMAGE_GROUP_ROW] = file.origin(rows)
                    if fluxes is not None:
                        return _joined(keys, rows, file, fluxes, need, catalogue, dropped)
                    inputs = file.cutouts(rows) if len(need.shape) == 4 else file.spectra(rows)[0]
                    return keys, np.ascontiguousarray(inputs, dtype=np.float32)
                yield start, load
    return file.n_rows, chunks()


def _joined(keys: pd.DataFrame, rows: np.ndarray, file, fluxes: pd.DataFrame, need: ModelInput, catalogue: Path,
            dropped: Counter | None):
    """The chunk's cutouts with their catalogue rows (keys gain each row's PHOTSYS where the catalogue
    has it); image rows the catalogue lacks are dropped and counted."""
    found = keys[KEY].isin(fluxes.index).to_numpy()
    if dropped is not None and (~found).any():
        dropped[f"TARGETID not in {catalogue.name}"] += int((~found).sum())
    keys = keys[found].reset_index(drop=True)
    if len(keys) == 0:
        return keys, None
    rows_fluxes = fluxes.loc[keys[KEY]].reset_index(drop=True)
    if FIELD_COLUMN in rows_fluxes:
        keys[FIELD_COLUMN] = rows_fluxes[FIELD_COLUMN].astype(str).str.strip().to_numpy()
    return keys, need.tensors(file.cutouts(rows[found]), rows_fluxes)


def _catalogue_chunks(path: Path, need: ModelInput, size: int) -> tuple[int, Iterator[tuple[int, Loader]]]:
    from galaxyprop.data.astroclip import N_SPECTRUM_PIXELS

    if len(need.shape) == 4 or (len(need.shape) == 2 and need.shape[1] == N_SPECTRUM_PIXELS):
        raise GalaxypropError(f"{path}: the model takes image cutouts or spectra; "
                              "give it an AstroCLIP file (HDF5 or Parquet shards)")
    table = CatalogueFile(path)
    id_column = table.id_column()
    if id_column is None:
        raise GalaxypropError(f"{path}: no id column (one of {list(ID_COLUMNS)})")
    features = list(need.columns) if need.columns else schema.embedding_names(need.shape[1])
    source = table.find(features)
    # A catalogue model takes each row's survey field (its calibration) from a PHOTSYS column.
    field = table.by_lower.get(FIELD_COLUMN.lower()) if need.columns else None

    def chunks():
        start = 0
        for batch in table.batches([id_column, *source, *([field] if field else [])], size, text=(id_column,)):
            def load(batch=batch, start=start):
                inputs = batch[source].set_axis(features, axis=1)
                if field:
                    inputs[FIELD_COLUMN] = batch[field].astype(str).str.strip().to_numpy()
                ids = normalise_ids(batch[id_column].to_numpy(), f"{path}: id column '{id_column}' "
                                    f"(rows {start}-{start + len(batch) - 1})")
                return pd.DataFrame({KEY: ids}), inputs if need.columns else inputs.to_numpy(np.float32)
            yield start, load
            start += len(batch)
    return table.n_rows, chunks()


def _mapped_chunks(path: Path, need: ModelInput, size: int, spec: CatalogSpec,
                   dropped: Counter) -> tuple[int, Iterator[tuple[int, Loader]]]:
    """A catalogue in a source's format (magnitudes, extinction, AB offsets) through its column map."""
    if not need.columns:
        raise GalaxypropError(f"{path}: --source reads a catalogue through a column map, but the model "
                              f"takes an array of shape {list(need.shape)}")
    missing = [c for c in need.columns if c.lower() != FIELD_COLUMN.lower() and c not in
               {schema.flux_column(b.name) for b in spec.bands} | {schema.ivar_column(b.name) for b in spec.bands}]
    if missing:
        raise GalaxypropError(f"{path}: the column map gives no {missing}, which the model takes")
    n_rows = CatalogueFile(path).n_rows

    def chunks():
        for start, frame, report in mapped_batches(path, spec, size, extra=(FIELD_COLUMN,)):
            dropped.update(report.dropped)

            def load(frame=frame):
                inputs = frame[list(need.columns)]
                if FIELD_COLUMN in frame:
                    inputs = inputs.assign(**{FIELD_COLUMN: frame[FIELD_COLUMN].astype(str).str.strip().to_numpy()})
                return pd.DataFrame({KEY: frame[schema.ID].to_numpy()}), inputs
            yield start, load
    return n_rows, chunks()


def input_is_catalogue(path: str | Path) -> bool:
    """Whether `path` is a catalogue, not an AstroCLIP file (HDF5 in either layout, or Parquet shards:
    a file, folder or glob whose columns are the image, spectrum, redshift and targetid)."""
    from galaxyprop.data.astroclip import astroclip_layout
    from galaxyprop.data.astroclip.layout import HDF5_SUFFIXES

    return Path(path).suffix.lower() not in HDF5_SUFFIXES and astroclip_layout(path) is None


def _input_bytes(path: Path) -> int:
    """Size of the input: a file, or every shard of a folder or glob of Parquet shards."""
    if path.is_file():
        return path.stat().st_size
    from galaxyprop.data.astroclip import shard_paths

    return sum(Path(file).stat().st_size for file, _ in shard_paths(path))


def input_chunks(path: str | Path, need: ModelInput, size: int, column_map: CatalogSpec | None = None,
                 dropped: Counter | None = None, catalogue: str | Path | None = None
                 ) -> tuple[int, Iterator[tuple[int, Loader]]]:
    """(number of rows, lazy chunks `(first row, loader)`) of an AstroCLIP file (joined with
    `catalogue` for a multimodal model) or a catalogue (read through `column_map` when given; the rows
    it cannot use are counted in `dropped`)."""
    from galaxyprop.data.astroclip.layout import is_glob

    path = Path(path)
    if not path.exists() and not is_glob(path):
        raise GalaxypropError(f"{path}: input file not found")
    if column_map is not None:
        return _mapped_chunks(path, need, size, column_map, Counter() if dropped is None else dropped)
    if catalogue is not None and not Path(catalogue).exists():
        raise GalaxypropError(f"{catalogue}: catalogue file not found")
    if not input_is_catalogue(path):
        return _hdf5_chunks(path, need, size, None if catalogue is None else Path(catalogue), dropped)
    if need.multimodal:
        raise GalaxypropError(f"{path}: the model takes cutouts and catalogue fluxes together; give it the "
                              "AstroCLIP file (--input) and the catalogue (--catalogue)")
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
    source: str | None = None
    catalogue: str | None = None


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
                 photsys: str | None = None, source: tuple[str, CatalogSpec] | None = None,
                 dropped: Counter | None = None, catalogue: str | Path | None = None) -> int:
    """Predict every row of `input_path` with the pyfunc `model`, writing Parquet `output` with
    TARGETID, prediction, spread, q02, q16, q50, q84, q98 (and the density when asked); return the
    row count. `photsys` names the survey field of every row (its calibration), where a catalogue's
    PHOTSYS column does not. `source` (name, column map) reads a catalogue in that source's format;
    the rows it cannot use (an unusable required band) are skipped and counted in `dropped`. A
    multimodal model reads the cutouts from the AstroCLIP `input_path` and each galaxy's fluxes (and
    PHOTSYS) from `catalogue`, joined on TARGETID."""
    if chunk_size < 1:
        raise GalaxypropError(f"chunk size must be positive, got {chunk_size}")
    input_path, output = Path(input_path), Path(output)
    need = ModelInput.of(model)
    dropped = Counter() if dropped is None else dropped
    n_rows, chunks = input_chunks(input_path, need, chunk_size, None if source is None else source[1], dropped,
                                  catalogue)
    parts = _parts_dir(output)
    if photsys is not None:
        from galaxyprop.data.schema import field_code

        photsys = field_code(photsys)
    _check_manifest(parts, Manifest(model_uri, str(input_path.resolve()), _input_bytes(input_path),
                                    chunk_size, densities, photsys, None if source is None else source[0],
                                    None if catalogue is None else str(Path(catalogue).resolve())), restart)
    try:
        done = _predict_chunks(model, chunks, parts, n_rows, input_path, densities, photsys, progress)
        merged = sorted(parts.glob("part-*.parquet"))
        if not merged:
            reasons = "; ".join(f"{reason}: {n}" for reason, n in sorted(dropped.items()) if n)
            raise GalaxypropError(f"{input_path}: no rows to predict" + (f" (every row was dropped: {reasons})"
                                                                          if reasons else " (the file has none)"))
        columns = pq.read_schema(merged[0]).names
        _merge(merged, output, input_path, describe_output(model, model_uri, columns))
    except GalaxypropError:
        if not any(parts.glob("part-*.parquet")):      # nothing to resume (e.g. no rows): leave no partial run
            shutil.rmtree(parts, ignore_errors=True)
        raise
    shutil.rmtree(parts)
    return done


def _predict_chunks(model, chunks, parts: Path, n_rows: int, input_path: Path, densities: bool,
                    photsys: str | None, progress: bool) -> int:
    """Predict every chunk that has no part file yet; the number of rows predicted."""
    done = 0
    with tqdm(total=n_rows, desc=f"predict {input_path.name}", unit="galaxy", disable=not progress) as bar:
        for start, load in chunks:
            part = parts / f"part-{start:012d}.parquet"
            if not part.exists():
                keys, inputs = load()
                if len(keys) == 0:           # every row of the chunk was skipped by the column map
                    continue
                try:
                    predicted = _predict_fields(model, keys, inputs, photsys)
                except Exception as error:
                    message = input_error(error)
                    if message is None:
                        raise
                    raise GalaxypropError(f"{input_path}: rows {start}-{start + len(keys) - 1}: {message}") from None
                if not densities:
                    predicted = predicted.drop(columns=[DENSITY_COLUMN], errors="ignore")
                predicted = pd.concat([keys.reset_index(drop=True), predicted.reset_index(drop=True)], axis=1)
                write_parquet(predicted, part)
                rows = len(keys)
            else:
                rows = pq.ParquetFile(part).metadata.num_rows
            done += rows
            bar.update(rows)
    return done


def _predict_fields(model, keys: pd.DataFrame, inputs, photsys: str | None) -> pd.DataFrame:
    """The model's answer for a chunk: at once, or (two-input models, whose tensors cannot carry a
    PHOTSYS column) one survey field at a time, each with its calibration."""
    fields = keys.pop(FIELD_COLUMN).to_numpy() if isinstance(inputs, dict) and FIELD_COLUMN in keys else None
    if fields is None or photsys:
        return model.predict(inputs, params={"photsys": photsys} if photsys else None)
    parts = []
    for field in pd.unique(fields):
        rows = np.flatnonzero(fields == field)
        part = model.predict({k: v[rows] for k, v in inputs.items()}, params={"photsys": field} if field else None)
        parts.append(part.set_axis(rows))
    return pd.concat(parts).sort_index()


def describe_output(model, model_uri: str, columns: Sequence[str]) -> dict:
    """What a prediction file says of itself (its Parquet schema metadata, key `galaxyprop`): the model,
    its target and unit, the density grid and its bin edges, and what each column is."""
    metadata = dict(getattr(getattr(model, "metadata", None), "metadata", None) or {})
    described = metadata.get("output_columns") or {}
    out = {"model_uri": model_uri, "target": metadata.get("target"), "unit": metadata.get("unit"),
           "columns": {c: (f"the input's galaxy id ({KEY})" if c == KEY else described.get(c, "from the input"))
                       for c in columns}}
    grid = metadata.get("density_grid")
    if grid and DENSITY_COLUMN in columns:
        out["density_grid"] = {**grid, "bin_edges": np.linspace(grid["low"], grid["high"], grid["n_bins"] + 1).tolist()}
    if "training_support" in metadata:
        out["training_support"] = metadata["training_support"]
    return out


QP_SUFFIXES = (".hdf5", ".h5", ".hdf")


def parquet_to_qp(parquet: str | Path, output: str | Path) -> int:
    """Write the predictions of `parquet` (written by `predict_file` with densities) as a qp file that
    `qp.read` opens: the densities on the model's grid as a qp histogram ensemble, and the id, point
    estimates, quantiles and support flags as its ancillary data. Atomic; the number of galaxies."""
    import json

    from galaxyprop.evaluation.densities import Grid, to_qp

    parquet, output = Path(parquet), Path(output)
    about = json.loads((pq.read_schema(parquet).metadata or {}).get(OUTPUT_METADATA, b"{}"))
    if "density_grid" not in about:
        raise GalaxypropError(f"{parquet}: no density grid in its metadata (the model gives no densities)")
    grid = Grid(*(about["density_grid"][k] for k in ("low", "high", "n_bins")))
    frame = pd.read_parquet(parquet)
    pdf = np.stack(frame.pop(DENSITY_COLUMN).to_numpy())
    ensemble = to_qp(pdf, grid, {c: frame[c].to_numpy() for c in frame.columns})
    tmp = output.with_name(f".{output.stem}.partial{output.suffix}")       # qp picks the format by suffix
    try:
        ensemble.write_to(str(tmp))
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    return len(frame)


def _check_ids_across_chunks(parts: list[Path], input_path: Path) -> None:
    """Each chunk's ids were checked as it was read; an id in two chunks is an error too, naming both
    chunks (part files are named by the file row their chunk starts at), before anything is written."""
    first: dict = {}
    for part in parts:
        start = int(part.stem.removeprefix("part-"))
        for offset, key in enumerate(pq.read_table(part, columns=[KEY]).column(KEY).to_pylist()):
            seen = first.setdefault(str(key), (start, offset))
            if seen != (start, offset):
                raise GalaxypropError(f"{input_path}: id {key} is repeated (row {start + offset} of the chunk from row "
                                      f"{start}, and row {seen[0] + seen[1]} of the chunk from row {seen[0]}); "
                                      "ids must be unique")


def _merge(parts: list[Path], output: Path, input_path: Path, description: dict | None = None) -> None:
    """Concatenate the part files into `output`, one part in memory at a time, atomically, with
    `description` in its schema metadata. Ids that are integers in one chunk and names in another are an
    error, as within one chunk."""
    import pyarrow as pa

    if not parts:
        raise GalaxypropError(f"{input_path}: no rows to predict")
    _check_ids_across_chunks(parts, input_path)
    schemas = [pq.ParquetFile(part).schema_arrow.remove_metadata() for part in parts]
    schema = schemas[0]
    kinds = [pa.types.is_integer(s.field(KEY).type) for s in schemas]
    if len(set(kinds)) > 1:
        rows = {kind: int(parts[kinds.index(kind)].stem.removeprefix("part-")) for kind in (True, False)}
        raise GalaxypropError(f"{input_path}: ids mix integers (the chunk from row {rows[True]}) and names (the chunk "
                              f"from row {rows[False]}); give every id as an integer or every id as a name")
    if description is not None:
        schema = schema.with_metadata({OUTPUT_METADATA: json.dumps(description)})
    with atomic_path(output) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for part in parts:
            writer.write_table(pq.read_table(part).cast(schema))
