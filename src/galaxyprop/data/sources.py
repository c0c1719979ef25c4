"""The pipeline's data sources (params `data.sources`): their files, and reading them into the layout
(`data.importing` brings them into data/raw).

`kind: desi` sources are AstroCLIP images + spectra (flat or grouped HDF5, or Parquet shards: a
file, a glob or a folder) + a FastSpecFit FITS file (the real files, or the mock survey the import
step simulates); HDF5 is imported as data/raw/astroclip.h5, Parquet shards into data/raw/astroclip/
under their own names. `kind: catalog` sources are plain catalogues read through a
column map, with the label K(^{0.1}r) fitted by kcorrect at the spectroscopic redshift.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.data import desi, schema
from galaxyprop.data.catalog import CatalogSpec, CleaningReport, column_name, header_names, read_catalog
from galaxyprop.data.fastspecfit import fastspec_column_names
from galaxyprop.data.targets import TargetColumn, target_columns
from galaxyprop.errors import GalaxypropError
from galaxyprop.physics.kcorrect_fit import fit_kcorrection
from galaxyprop.workspace import FASTSPEC_FILE, raw_images

SPLITS = ("random", "file")      # data.sources.<name>.split: our seeded split, or the file's own
PACKAGE_PREFIX = "kcorrect:"
KINDS = ("desi", "catalog")
MOCK = "mock"


@dataclass
class SourceData:
    """A source read into the layout, plus what later stages need to know about its bands."""

    frame: pd.DataFrame
    report: CleaningReport
    bands: list[str]                                  # required bands: every row has a positive flux
    responses: dict[str, dict[str, str]]              # band -> {photsys: kcorrect response}
    label_band: str                                   # observed band K(^{0.1}r) is mapped from
    file_split: np.ndarray | None = None              # 'train' / 'test' of each row from a source's own files
    targets: list[str] | None = None                  # the wanted targets the source has (columns of frame)

    def bands_metadata(self) -> dict:
        return {"bands": self.bands, "responses": self.responses, "label_band": self.label_band,
                "targets": self.targets}


def source_spec(data: Mapping) -> tuple[str, dict]:
    """The selected source's name and settings, checked."""
    name = data.get("source")
    sources = data.get("sources", {})
    if name not in sources:
        raise GalaxypropError(f"params data.source = {name!r} is not one of data.sources {sorted(sources)}")
    spec = dict(sources[name])
    if spec.get("kind") not in KINDS:
        raise GalaxypropError(f"params data.sources.{name}.kind must be one of {list(KINDS)}")
    return name, spec


def split_of(name: str, spec: Mapping) -> str:
    """A source's `split`: 'random' (our seeded split) or 'file' (the source's own: an AstroCLIP file's
    train/test, or a catalogue given as `paths: {train: ..., test: ...}`, where it is the default)."""
    split = spec.get("split", "file" if "paths" in spec else "random")
    if split not in SPLITS:
        raise GalaxypropError(f"params data.sources.{name}.split must be one of {list(SPLITS)}, got {split!r}")
    if split == "file" and spec.get("kind") == "catalog" and "paths" not in spec:
        raise GalaxypropError(f"params data.sources.{name}.split: 'file' needs the catalogue as separate files, "
                              "paths: {train: FILE, test: FILE}")
    if ("path" in spec) == ("paths" in spec) and spec.get("kind") == "catalog":
        raise GalaxypropError(f"params data.sources.{name}: give the catalogue as `path` (one file) or "
                              "`paths: {train: FILE, test: FILE}`")
    if "paths" in spec and (not isinstance(spec["paths"], Mapping) or set(spec["paths"]) != {"train", "test"}):
        raise GalaxypropError(f"params data.sources.{name}.paths must map train and test to a file each, "
                              f"got {spec['paths']!r}")
    return split


def source_split(data: Mapping) -> str:
    """The selected source's `split` setting (see `split_of`)."""
    return split_of(*source_spec(data))


def source_files(name: str, spec: Mapping) -> list[Path]:
    """The files a source is imported from, checked to exist (so that a typo in a path stops the
    run before import_data replaces data/raw). The mock survey has none."""
    if name == MOCK:
        return []
    if spec.get("kind") == "catalog":
        split_of(name, spec)
        paths = {"path": spec["path"]} if "path" in spec else {f"paths.{k}": v for k, v in spec["paths"].items()}
    else:
        paths = {key: spec.get(key) for key in ("images", "catalog")}
    files = []
    for key, path in paths.items():
        if not path:
            raise GalaxypropError(f"params data.sources.{name}.{key}: path missing")
        found = resolve_path(str(path))
        if key == "images":
            from galaxyprop.data.astroclip.layout import is_glob, is_parquet_source
            from galaxyprop.data.astroclip.parquet import shard_paths

            if is_glob(found) or (found.is_dir() and is_parquet_source(found)):
                files += [Path(f) for f, _ in shard_paths(found)]      # a clear error when none match
                continue
        if not found.is_file():
            raise GalaxypropError(f"params data.sources.{name}.{key}: {found} not found")
        files.append(found)
    return files


def absent_target_columns(name: str, spec: Mapping,
                          columns: Mapping[str, TargetColumn]) -> list[tuple[str, str, Path, list[str]]]:
    """(target, column, file, the file's columns) for each file column a wanted target reads that the
    source's files lack, read from their headers alone, so that check_params names it before any stage
    removes an output. None checked for the mock (mock.config checks the labels it writes)."""
    needed = [(target, c) for target, column in columns.items() for c in column.file_columns]
    if name == MOCK or not needed:
        return []
    if spec.get("kind") == "desi":
        path = resolve_path(str(spec["catalog"]))
        have = fastspec_column_names(path)
        return [(target, c, path, sorted(have)) for target, c in needed if c not in have]
    absent = []
    for path in source_files(name, spec):
        have = header_names(path, spec.get("hdu", 1))      # in the file's order
        absent += [(target, c, path, have) for target, c in needed if column_name(c) not in have]
    return absent


def resolve_path(path: str) -> Path:
    """A path, or `kcorrect:<path>` inside the installed kcorrect package (its bundled real data)."""
    if path.startswith(PACKAGE_PREFIX):
        import kcorrect

        return Path(os.path.dirname(kcorrect.__file__)) / path.removeprefix(PACKAGE_PREFIX)
    return Path(path)


def load_source(data: Mapping, raw: Path, targets: Mapping, names: list[str]) -> SourceData:
    """Read the imported source from `raw` into the layout, dropping and counting unusable rows.

    `targets` are params `targets` (their settings) and `names` the targets wanted (`train.targets`);
    the source gives those it has (`data.targets.target_columns`)."""
    name, spec = source_spec(data)
    z_range = {"z_min": float(data.get("z_min", 0.0)),
               "z_max": np.inf if data.get("z_max") is None else float(data["z_max"])}
    subset = {"max_rows": data.get("max_rows"), "seed": data.get("seed", 0)}
    columns = target_columns(targets, name, spec, names)
    given = [t for t in names if t == schema.REDSHIFT or t in columns]
    if spec["kind"] == "desi":
        bands = list(spec.get("required_bands", desi.BANDS))
        images = raw_images(raw)
        if images is None:
            raise GalaxypropError(f"{raw}: no imported image file; run the import_data stage")
        frame, report = desi.read_desi(images, raw / FASTSPEC_FILE, bands, **z_range, **subset, targets=columns)
        return SourceData(frame, report, bands, {b: desi.band_responses(b) for b in desi.BANDS}, "r",
                          targets=given)
    catalog = CatalogSpec.from_params({**spec, **z_range})
    in_file = {t: c for t, c in columns.items() if not c.from_kcorrect}
    frame, report, file_split = _read_catalogues(raw, catalog, subset, in_file)
    fitted = {t: c.from_kcorrect for t, c in columns.items() if c.from_kcorrect}
    if fitted:
        label = spec.get("label")
        if label is None:
            raise GalaxypropError(f"params data.sources.{name}: targets {sorted(fitted)} come from its kcorrect fit, "
                                  "but the source has no `label` section saying how to fit it")
        result = reference_fit(frame, catalog, label)
        derived = {"kcorrection": result.kcorrection, "logmstar": result.logmstar}
        for target, quantity in fitted.items():
            frame[target] = derived[quantity]
        failed = ~np.isfinite(frame[list(fitted)].to_numpy()).all(axis=1)
        if failed.any():
            report.dropped["kcorrect reference fit failed"] += int(failed.sum())
            report.n_kept -= int(failed.sum())
            frame = frame[~failed].reset_index(drop=True)
            file_split = None if file_split is None else file_split[~failed]
    responses = {b.name: {"*": b.response} for b in catalog.bands if b.response}
    label = spec.get("label") or {}
    label_band = next((b for b, r in responses.items() if r["*"] == label.get("response_map")), None)
    if any(b not in responses for b in catalog.required_bands) or (label and label_band is None):
        raise GalaxypropError(f"params data.sources.{name}: every required band and the label's "
                              "response_map need a 'response' in bands")
    return SourceData(frame, report, list(catalog.required_bands), responses, label_band or "r", file_split,
                      targets=given)


def _read_catalogues(raw: Path, catalog: CatalogSpec, subset: Mapping,
                     targets: Mapping) -> tuple[pd.DataFrame, CleaningReport, np.ndarray | None]:
    """The imported catalogue, or its train and test files with each row's file (ids unique across both)."""
    files = {part: sorted(raw.glob(f"catalog_{part}.*")) for part in ("train", "test")}
    if not all(files.values()):
        whole = sorted(raw.glob("catalog.*"))
        if not whole:
            raise GalaxypropError(f"{raw}: no imported catalogue; run the import_data stage")
        return (*read_catalog(whole[0], catalog, **subset, targets=targets), None)
    frames, report = [], CleaningReport(n_input=0)
    for part, (path, *_) in files.items():
        frame, part_report = read_catalog(path, catalog, **subset, targets=targets)
        frames.append(frame.assign(_file=part))
        report.n_input += part_report.n_input
        report.n_kept += part_report.n_kept
        report.dropped.update(part_report.dropped)
        report.nondetections.update(part_report.nondetections)
        report.empty_bands += [b for b in part_report.empty_bands if b not in report.empty_bands]
    frame = pd.concat(frames, ignore_index=True)
    if frame[schema.ID].dtype.kind == "O" and frames[0][schema.ID].dtype != frames[1][schema.ID].dtype:
        raise GalaxypropError(f"{files['train'][0]} and {files['test'][0]}: ids are integers in one file and names "
                              "in the other")
    both = frame[schema.ID][frame[schema.ID].duplicated()]
    if len(both):
        raise GalaxypropError(f"{files['train'][0]} and {files['test'][0]}: id {both.iloc[0]!r} is in both files "
                              f"({len(both)} such ids); a galaxy is either for training or for testing")
    return frame.drop(columns="_file"), report, frame["_file"].to_numpy(dtype=object)


@dataclass(frozen=True)
class ReferenceFit:
    """What a catalogue source's kcorrect reference fit gives: K(^{0.1}r) and the stellar mass."""

    kcorrection: np.ndarray
    logmstar: np.ndarray     # log10 M* / (Msun h^-2), h = 1 and Omega_m = 0.3 as the mock's LOGMSTAR


def reference_fit(frame: pd.DataFrame, spec: CatalogSpec, label: Mapping) -> ReferenceFit:
    """kcorrect fitted on every valid band with the spectroscopic redshift: K(^{0.1}r) and log M*
    (the templates' surviving mass, kcorrect's `mremain`, at the luminosity distance)."""
    from galaxyprop.physics import cosmology
    from galaxyprop.physics.sed import load_templates

    bands = label["bands"]
    responses = tuple(spec.band(b).response for b in bands)
    if None in responses:
        raise GalaxypropError("params label.bands: every band needs a 'response' in bands")
    flux = frame[[schema.flux_column(b) for b in bands]].to_numpy()
    ivar = frame[[schema.ivar_column(b) for b in bands]].to_numpy()
    z = frame[schema.REDSHIFT].to_numpy()
    result = fit_kcorrection(flux, ivar, z, responses, label["response_out"], label["response_map"],
                             label["band_shift"])
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = load_templates().stellar_mass(result.coeffs, cosmology.distance_modulus(np.maximum(z, 1e-4), 0.3))
        logmstar = np.where(result.ok & (mass > 0), np.log10(np.where(mass > 0, mass, 1.0)), np.nan)
    return ReferenceFit(result.kcorrection, logmstar)
