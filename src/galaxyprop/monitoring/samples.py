"""What a drift comparison reads: photometry columns, image embeddings and model predictions of
the pipeline's galaxies or of a batch a user brings (AstroCLIP HDF5, with or without its
FastSpecFit catalogue, or a catalogue table)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from galaxyprop.data import schema
from galaxyprop.data.targets import target_names
from galaxyprop.errors import GalaxypropError
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.monitoring.drift import Sample

MAG_ERROR = 2.5 / np.log(10)    # d(mag) = MAG_ERROR * d(flux) / flux
PREDICT_CHUNK = 2048

if TYPE_CHECKING:
    from galaxyprop.data.catalog import CatalogSpec


def magnitude_error_column(band: str) -> str:
    return f"magerr_{band}"


def photometry_columns(frame: pd.DataFrame, bands: Sequence[str]) -> pd.DataFrame:
    """AB magnitudes, adjacent colours and magnitude errors (from the inverse variances) of `bands`.

    The errors carry a survey's depth, which the magnitudes of a flux-limited sample barely show."""
    features = PhotometryFeatures(tuple(bands))
    out = pd.DataFrame(features.transform(frame), columns=features.names)
    for band in bands:
        ivar_col = schema.ivar_column(band)
        if ivar_col not in frame.columns:
            raise GalaxypropError(f"input lacks the inverse-variance column '{ivar_col}' of band {band}")
        flux, ivar = frame[schema.flux_column(band)].to_numpy(float), frame[ivar_col].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            error = MAG_ERROR / (flux * np.sqrt(ivar))
        out[magnitude_error_column(band)] = np.where(ivar > 0, error, np.nan)
    return out


def sample_name(text: str) -> str:
    """A comparison-safe name: letters, digits and single underscores, never `_vs_`."""
    name = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower().replace("_vs_", "_")
    return name or "batch"


@dataclass
class Batch:
    """Galaxies read from files: catalogue columns in the galaxyprop layout and, from an image
    file, their cutouts (n, 3, H, W)."""

    path: Path
    frame: pd.DataFrame
    cutouts: np.ndarray | None = None
    #: rows of the file that could not be used, by reason (a column map's unusable required band)
    dropped: Counter = field(default_factory=Counter)

    def describe_dropped(self) -> str | None:
        """One line on the rows left out, or None when every row was used."""
        if not self.dropped:
            return None
        reasons = "; ".join(f"{reason}: {n}" for reason, n in sorted(self.dropped.items()))
        total = len(self.frame) + sum(self.dropped.values())
        return f"{self.path}: {len(self.frame)} of {total} rows used, {sum(self.dropped.values())} left out ({reasons})"

    @property
    def has_photometry(self) -> bool:
        return any(c.startswith("flux_") for c in self.frame.columns)


def _read_images(path: Path, catalog: Path | None, bands: Sequence[str], targets: Mapping) -> Batch:
    from galaxyprop.data.astroclip import AstroclipFile
    from galaxyprop.data.desi import IMAGE_ROW, read_desi

    if catalog is not None:
        frame, report = read_desi(path, catalog, required_bands=tuple(bands), targets=catalogue_targets(catalog, targets))
        with AstroclipFile(path) as file:
            return Batch(path, frame, file.cutouts(frame[IMAGE_ROW].to_numpy()))
    with AstroclipFile(path) as file:
        ids, z = file.index()
        rows = np.arange(file.n_rows)
        return Batch(path, pd.DataFrame({schema.ID: ids, schema.REDSHIFT: z}), file.cutouts(rows))


def catalogue_targets(catalog: Path, targets: Mapping) -> dict:
    """The targets (params `targets`) whose FastSpecFit columns this catalogue has (labels for the metrics)."""
    from galaxyprop.data.fastspecfit import read_fastspec
    from galaxyprop.data.targets import target_columns

    if not targets:
        return {}
    columns = set(read_fastspec(catalog))
    wanted = target_columns(targets, "desi", {"kind": "desi"}, target_names(targets))
    return {name: target for name, target in wanted.items() if set(target.file_columns) <= columns}


def _read_table(path: Path, bands: Sequence[str], targets: Mapping) -> Batch:
    from galaxyprop.data.catalogue_file import CatalogueFile, as_numbers

    table = CatalogueFile(path)
    wanted = [c for b in bands for c in (schema.flux_column(b), schema.ivar_column(b))]
    source = table.find(wanted, needed_by="drift's photometry")
    optional = [c for c in (schema.PHOTSYS, *target_names(targets)) if c.lower() in table.by_lower]
    source += table.find(optional)
    id_column = table.id_column()    # checked as predict checks them (read_batch), though drift does not need them
    ids = [id_column] if id_column is not None else []
    frame = table.read(source + ids, text=tuple(ids))
    frame = frame.set_axis(wanted + optional + [schema.ID] * len(ids), axis=1)
    columns = dict(zip(wanted + optional, source, strict=True))
    return Batch(path, as_numbers(frame, {k: v for k, v in columns.items() if k != schema.PHOTSYS}, path))


def _read_mapped(path: Path, column_map: CatalogSpec, targets: Mapping) -> Batch:
    """A catalogue in a source's format, through its column map (rows it cannot use dropped)."""
    from galaxyprop.data.catalog import mapped_batches

    parts, dropped = [], Counter()
    for _, frame, report in mapped_batches(path, column_map, 1 << 20, extra=(schema.PHOTSYS, *target_names(targets)),
                                           redshift=True):
        parts.append(frame)
        dropped.update(report.dropped)
    return Batch(path, pd.concat(parts, ignore_index=True), dropped=dropped)


def read_batch(path: str | Path, bands: Sequence[str], catalog: str | Path | None = None,
               column_map: CatalogSpec | None = None, *, targets: Mapping) -> Batch:
    """A user's galaxies: an AstroCLIP file (HDF5 or Parquet shards: images; joined with a FastSpecFit `catalog` for
    photometry and labels), or a catalogue (.parquet/.fits/.csv with `flux_<band>`,
    `flux_ivar_<band>` for every band, any case; the targets (`z`, `kcorr_r01`, ...) and `photsys` used where present),
    or a catalogue in any format read through a source's `column_map`. `targets`: the project's (params `targets`),
    read as labels where the file has them."""
    from galaxyprop.data.astroclip.layout import is_glob
    from galaxyprop.deploy.batch import input_is_catalogue

    path = Path(path)
    if not path.exists() and not is_glob(path):
        raise GalaxypropError(f"{path}: file not found")
    if column_map is not None:
        batch = _read_mapped(path, column_map, targets)
    elif not input_is_catalogue(path):
        batch = _read_images(path, None if catalog is None else Path(catalog), bands, targets)
    elif catalog is not None:
        raise GalaxypropError(f"{catalog}: a catalogue joins an AstroCLIP image file, but {path} is not one")
    else:
        batch = _read_table(path, bands, targets)
    if len(batch.frame) == 0:
        raise GalaxypropError(f"{path}: no rows to compare")
    if schema.ID in batch.frame:     # what predict refuses (a repeated id, integers mixed with names), drift does
        batch.frame[schema.ID] = schema.normalise_ids(batch.frame[schema.ID].to_numpy(), f"{path}")
    return batch


def predict(models: Mapping[str, object], frame: pd.DataFrame, cutouts: np.ndarray | None,
            skipped: dict[str, str] | None = None, progress: bool = False, load=None) -> pd.DataFrame | None:
    """Each target's point prediction by its registered model (pyfunc), in chunks; a target may name
    several models (its multimodal, image and catalogue ones), the first whose inputs these galaxies
    have predicts. A target none of whose models can take them is left out, and why is put in `skipped`.
    `load`: the models are given as what it loads (e.g. name and version), each loaded only when tried."""
    out = {}
    skipped = {} if skipped is None else skipped
    for target, choices in models.items():
        reasons = []
        for choice in choices if isinstance(choices, list | tuple) else [choices]:
            model = load(choice) if load else choice
            inputs_at, why = _inputs(model, frame, cutouts)
            if inputs_at is not None:
                out[target] = _predictions(model, inputs_at, len(frame), target, progress)
                break
            reasons.append(why)
        else:
            skipped[target] = "; ".join(reasons)
    return pd.DataFrame(out) if out else None


def _inputs(model, frame: pd.DataFrame, cutouts: np.ndarray | None):
    """(rows -> the model's inputs for them, None), or (None, why the galaxies cannot be given to it)."""
    from galaxyprop.deploy.batch import ModelInput

    need = ModelInput.of(model)
    if need.shape and (cutouts is None or len(need.shape) != 4):
        return None, f"the model takes inputs of shape {list(need.shape)}; the galaxies have no cutouts"
    columns = list(need.flux_columns or need.columns)
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        return None, f"the model takes columns {columns}; the galaxies lack {missing}"
    if need.multimodal:
        return (lambda rows: need.tensors(cutouts[rows], frame.iloc[rows])), None
    if need.shape:
        return (lambda rows: cutouts[rows]), None
    return (lambda rows: frame.iloc[rows][columns]), None


def _predictions(model, inputs_at, n_rows: int, target: str, progress: bool) -> np.ndarray:
    chunks = range(0, n_rows, PREDICT_CHUNK)
    try:
        values = [model.predict(inputs_at(slice(start, start + PREDICT_CHUNK)))["prediction"].to_numpy(float)
                  for start in tqdm(chunks, desc=f"predict {target}", unit="chunk", disable=not progress)]
    except Exception as err:
        from galaxyprop.registry.serving import input_error

        message = input_error(err)
        if message is None:
            raise
        raise GalaxypropError(f"the {target} model refuses these galaxies: {message}") from None
    return np.concatenate(values)


def embed(cutouts: np.ndarray, encoder_path: str | Path, progress: bool = False) -> np.ndarray:
    """Image embeddings of cutouts (n, 3, H, W) by the pipeline's image encoder (the embed stage's)."""
    from galaxyprop.data.io import load_object
    from galaxyprop.encoder.embedding import ImageEmbedder

    encoder = load_object(encoder_path, ImageEmbedder)
    return encoder.transform(cutouts, progress=progress)


def to_sample(name: str, frame: pd.DataFrame, bands: Sequence[str], embeddings: np.ndarray | None = None,
              predictions: pd.DataFrame | None = None, *, targets: Mapping) -> Sample:
    """A drift sample of catalogue rows in the galaxyprop layout (photometry where they have fluxes, and the
    labels of `targets`, params `targets`, where it has their columns)."""
    has_fluxes = all(schema.flux_column(b) in frame.columns for b in bands)
    labels = [t for t in target_names(targets) if t in frame.columns]
    return Sample(name, photometry_columns(frame, bands) if has_fluxes else None, embeddings, predictions,
                  frame[labels].reset_index(drop=True) if labels else None)


ALL_FIELDS = "all"


def field_names(frame: pd.DataFrame) -> np.ndarray:
    """Each galaxy's survey field (`north`/`south` by PHOTSYS); `all` for a catalogue without PHOTSYS."""
    if schema.PHOTSYS not in frame.columns:
        return np.full(len(frame), ALL_FIELDS, dtype=object)
    return frame[schema.PHOTSYS].map(schema.field_name).to_numpy(dtype=object)


def field_mask(frame: pd.DataFrame, field_name: str) -> np.ndarray:
    """Rows of one survey field; an error naming the fields there are if it has none."""
    names = field_names(frame)
    mask = names == field_name
    if not mask.any():
        raise GalaxypropError(f"no galaxies of field '{field_name}'; the data has {sorted(set(names))}")
    return mask
