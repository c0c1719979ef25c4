"""Generic catalogue reader (FITS, CSV, Parquet) driven by a column map.

The column map names, per band, either a flux (with an inverse variance or an error) or a
magnitude with its error, the zero point of the flux units, an optional Galactic extinction
column and an AB offset. Array columns are addressed as ``NAME[i]``. Rows that cannot be used
are dropped and counted by reason, never silently.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.data import schema
from galaxyprop.data.catalogue_file import FORMATS, PARQUET, CatalogueFile, is_fits, stack_lists
from galaxyprop.errors import GalaxypropError, reading
from galaxyprop.physics import magnitudes

_INDEXED = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<index>\d+)\]$")
# Magnitudes outside this range are catalogue sentinels (0, 99, -9999), not measurements.
_VALID_MAG_RANGE = (0.0, 50.0)
#: The magnitude that marks a non-detection (RAIL's `nondetect_val`; DC2, CosmoDC2 and most survey files);
#: a non-finite magnitude (inf, NaN) is one too.
NONDETECTION_MAG = 99.0
#: A magnitude error column holding more than this (and less than the largest valid magnitude) is a limiting
#: magnitude (a non-detection's 1-sigma limit in RAIL's convention), not an error.
_LIMIT_IN_ERROR_COLUMN = 10.0


@dataclass(frozen=True)
class BandSpec:
    """Where one band's photometry lives in a catalogue and how to turn it into AB nanomaggies."""

    name: str
    response: str | None = None
    flux: str | None = None
    flux_ivar: str | None = None
    flux_err: str | None = None
    mag: str | None = None
    mag_err: str | None = None
    zeropoint: float = magnitudes.NANOMAGGIE_ZEROPOINT
    extinction: str | None = None
    extinction_factor: float = 1.0
    ab_offset: float = 0.0
    #: the band's 1-sigma limiting magnitude, for non-detections whose error column does not give it
    limit: float | None = None

    @classmethod
    def from_mapping(cls, name: str, spec: Mapping) -> BandSpec:
        unknown = set(spec) - set(cls.__dataclass_fields__)
        if unknown:
            raise GalaxypropError(f"band '{name}': unknown column-map keys {sorted(unknown)}")
        band = cls(name=name, **spec)
        has_flux = band.flux is not None and (band.flux_ivar or band.flux_err) is not None
        has_mag = band.mag is not None and band.mag_err is not None
        if has_flux == has_mag:
            raise GalaxypropError(
                f"band '{name}': give either flux with flux_ivar or flux_err, or mag with mag_err"
            )
        return band


@dataclass(frozen=True)
class CatalogSpec:
    """The column map of one catalogue."""

    bands: tuple[BandSpec, ...]
    redshift: str
    id: str | None = None
    required_bands: tuple[str, ...] = ()
    z_min: float = 0.0
    z_max: float = np.inf
    hdu: int | str = 1

    @classmethod
    def from_params(cls, data: Mapping) -> CatalogSpec:
        columns = data.get("columns", {})
        if "redshift" not in columns:
            raise GalaxypropError("params data.columns.redshift is missing")
        bands = tuple(BandSpec.from_mapping(n, s) for n, s in data.get("bands", {}).items())
        names = [b.name for b in bands]
        required = tuple(data.get("required_bands", names))
        missing = [b for b in required if b not in names]
        if missing:
            raise GalaxypropError(f"params data.required_bands names unknown bands {missing}")
        z_max = data.get("z_max")
        return cls(
            bands=bands,
            redshift=columns["redshift"],
            id=columns.get("id"),
            required_bands=required,
            z_min=float(data.get("z_min", 0.0)),
            z_max=np.inf if z_max is None else float(z_max),
            hdu=data.get("hdu", 1),
        )

    @classmethod
    def of_source(cls, data: Mapping, name: str) -> CatalogSpec:
        """The column map of `data.sources.<name>` (a `kind: catalog` source) with the data's redshift range."""
        sources = data.get("sources", {})
        if name not in sources:
            raise GalaxypropError(f"unknown source {name!r}: params data.sources has {sorted(sources)}")
        spec = sources[name]
        if spec.get("kind") != "catalog":
            raise GalaxypropError(f"source {name!r} is a {spec.get('kind')!r} source; a column map is read from "
                                  "a `kind: catalog` source (DESI files are read as they are)")
        try:
            return cls.from_params({**spec, "z_min": data.get("z_min", 0.0), "z_max": data.get("z_max")})
        except GalaxypropError as err:
            raise GalaxypropError(f"params data.sources.{name}: {err}") from None

    def band(self, name: str) -> BandSpec:
        for band in self.bands:
            if band.name == name:
                return band
        raise GalaxypropError(f"unknown band '{name}'; the column map has {[b.name for b in self.bands]}")


@dataclass
class CleaningReport:
    """How many rows came in, how many were kept, and why the others were dropped."""

    n_input: int
    n_kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    #: per band, the kept rows whose photometry there is a non-detection (kept at its 1-sigma limit)
    nondetections: Counter = field(default_factory=Counter)
    #: bands without a single detection, left out of the photometry (their columns are zero-weight)
    empty_bands: list = field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        return self.n_input - self.n_kept

    def summary(self) -> str:
        reasons = "; ".join(f"{reason}: {n}" for reason, n in sorted(self.dropped.items()))
        text = f"kept {self.n_kept} of {self.n_input} rows, dropped {self.n_dropped}" + (
            f" ({reasons})" if reasons else "")
        if self.nondetections:
            text += "; non-detections kept at their 1-sigma limit: " + ", ".join(
                f"{band} {n}" for band, n in sorted(self.nondetections.items()))
        if self.empty_bands:
            text += f"; bands without a detection, left out: {self.empty_bands}"
        return text

    def as_dict(self) -> dict:
        return {"n_input": self.n_input, "n_kept": self.n_kept, "n_dropped": self.n_dropped,
                "dropped_by_reason": dict(self.dropped), "nondetections": dict(self.nondetections),
                "empty_bands": list(self.empty_bands)}


def header_names(path: Path, hdu: int | str = 1) -> list[str]:
    """The column names `_Table.read` would give, from the file's header alone (no rows read)."""
    with reading(path, "catalogue file"):
        if is_fits(path):
            from astropy.io import fits

            with fits.open(path, memmap=True) as hdus:
                columns = getattr(hdus[hdu], "columns", None)
                if columns is None:
                    raise GalaxypropError(f"{path}: HDU {hdu!r} is not a table")
                return list(columns.names)
        if path.suffix.lower() == ".csv":
            return list(pd.read_csv(path, nrows=0).columns)
        if path.suffix.lower() in PARQUET:
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
    raise GalaxypropError(f"{path}: unsupported catalogue format '{path.suffix.lower()}' ({FORMATS})")


def column_name(expression: str) -> str:
    """The file column an expression reads: `MODELFLUX` of `MODELFLUX[2]`."""
    match = _INDEXED.match(expression)
    return match["name"] if match else expression


class _Table:
    """Numeric columns of a catalogue file, addressed by name or ``NAME[i]``."""

    def __init__(self, path: Path, columns: dict[str, np.ndarray]):
        self.path, self.columns = path, columns
        lengths = {len(v) for v in self.columns.values()}
        self.n_rows = lengths.pop() if lengths else 0

    @classmethod
    def read(cls, path: Path, hdu: int | str, text_columns: tuple[str, ...] = ()) -> _Table:
        """Every column of the file (`text_columns` kept as text in a CSV)."""
        with reading(path, "catalogue file"):
            if is_fits(path):
                from astropy.table import Table

                table = Table.read(path, hdu=hdu, format="fits", memmap=False)
                columns = {name: np.asarray(table[name]) for name in table.colnames}
            elif path.suffix.lower() == ".csv":
                columns = {k: v.to_numpy() for k, v in pd.read_csv(path, dtype={c: str for c in text_columns}).items()}
            elif path.suffix.lower() in PARQUET:
                frame = pd.read_parquet(path)
                columns = {k: stack_lists(v.to_numpy()) for k, v in frame.items()}
            else:
                raise GalaxypropError(f"{path}: unsupported catalogue format '{path.suffix.lower()}' ({FORMATS})")
        return cls(path, columns)

    def get(self, expression: str, role: str, numeric: bool = True) -> np.ndarray:
        match = _INDEXED.match(expression)
        name, index = column_name(expression), (int(match["index"]) if match else None)
        if name not in self.columns:
            raise GalaxypropError(f"{self.path}: column '{name}' ({role}) not found; "
                                  f"available: {', '.join(sorted(self.columns))}")
        values = self.columns[name]
        if index is not None:
            if values.ndim != 2 or index >= values.shape[1]:
                raise GalaxypropError(f"{self.path}: column '{expression}' ({role}) cannot be "
                                      f"indexed; '{name}' has shape {values.shape}")
            values = values[:, index]
        elif values.ndim != 1:
            raise GalaxypropError(f"{self.path}: column '{name}' ({role}) is an array column of "
                                  f"shape {values.shape}; address one element as {name}[i]")
        if numeric and values.dtype.kind not in "biuf":
            raise GalaxypropError(f"{self.path}: column '{expression}' ({role}) has type "
                                  f"{values.dtype}, expected numbers")
        if numeric:
            values = np.ma.filled(values.astype(float), np.nan) if np.ma.isMaskedArray(values) \
                else values.astype(float)
        return values


def _band_photometry(table: _Table, band: BandSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AB nanomaggies, inverse variance, a validity mask and a non-detection mask for one band.

    A magnitude of 99 (or inf, NaN) is a non-detection, as RAIL and the survey files write it. Where its
    1-sigma limiting magnitude is known (in the error column, RAIL's convention, or the band's `limit`),
    it is kept as what it is, a measurement of signal-to-noise 1 at that limit: the flux of the limit
    with the flux itself as its error (what RAIL's estimators do with `mag_limits`). Without a known
    limit it is unusable, as before.
    """
    if band.flux is not None:
        raw = table.get(band.flux, f"band {band.name} flux")
        if band.flux_ivar is not None:
            raw_ivar = table.get(band.flux_ivar, f"band {band.name} flux_ivar")
        else:
            raw_ivar = magnitudes.flux_err_to_ivar(table.get(band.flux_err, f"band {band.name} flux_err"))
        scale = magnitudes.rescale_flux(1.0, band.zeropoint)
        flux, ivar = raw * scale, raw_ivar / scale**2
        valid = np.isfinite(flux) & (flux > 0) & np.isfinite(ivar) & (ivar > 0)
        nondetected = np.zeros(len(valid), dtype=bool)
    else:
        mag = table.get(band.mag, f"band {band.name} mag")
        mag_err = table.get(band.mag_err, f"band {band.name} mag_err")
        valid = (np.isfinite(mag) & (mag > _VALID_MAG_RANGE[0]) & (mag < _VALID_MAG_RANGE[1])
                 & np.isfinite(mag_err) & (mag_err > 0))
        flux = magnitudes.mag_to_flux(np.where(valid, mag, np.nan), band.zeropoint)
        ivar = magnitudes.mag_err_to_flux_ivar(flux, np.where(valid, mag_err, np.nan))
        with np.errstate(invalid="ignore"):
            limit = np.where((mag_err > _LIMIT_IN_ERROR_COLUMN) & (mag_err < _VALID_MAG_RANGE[1]), mag_err,
                             np.nan if band.limit is None else band.limit)
            nondetected = (~np.isfinite(mag) | (mag == NONDETECTION_MAG)) & np.isfinite(limit)
        at_limit = magnitudes.mag_to_flux(np.where(nondetected, limit, np.nan), band.zeropoint)
        flux = np.where(nondetected, at_limit, flux)
        ivar = np.where(nondetected, 1.0 / at_limit**2, ivar)
        valid |= nondetected
    correction = 10.0 ** (-0.4 * band.ab_offset)
    if band.extinction is not None:
        extinction = table.get(band.extinction, f"band {band.name} extinction")
        correction = correction * 10.0 ** (0.4 * band.extinction_factor * extinction)
        valid &= np.isfinite(extinction)
    with np.errstate(invalid="ignore"):
        flux, ivar = flux * correction, ivar / correction**2
    return np.where(valid, flux, 0.0), np.where(valid, ivar, 0.0), valid, nondetected & valid


def source_columns(spec: CatalogSpec, redshift: bool = True) -> list[str]:
    """The file columns the column map reads (array columns by their name)."""
    expressions = [spec.redshift] if redshift else []
    for band in spec.bands:
        expressions += [e for e in (band.flux, band.flux_ivar, band.flux_err, band.mag, band.mag_err,
                                    band.extinction) if e is not None]
    return list(dict.fromkeys(_INDEXED.match(e)["name"] if _INDEXED.match(e) else e for e in expressions))


def map_photometry(table: _Table, spec: CatalogSpec, report: CleaningReport,
                   keep: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Flux and inverse-variance columns of every band in the layout, and per band the rows that are
    non-detections kept at their limit; rows with an unusable required band are cleared from `keep` and
    counted in `report`."""
    columns, nondetections = {}, {}
    for band in spec.bands:
        flux, ivar, valid, nondetections[band.name] = _band_photometry(table, band)
        columns[schema.flux_column(band.name)] = flux
        columns[schema.ivar_column(band.name)] = ivar
        if band.name in spec.required_bands:
            bad = ~valid
            report.dropped[f"{band.name} flux unusable: non-finite or non-positive ({band.flux or band.mag})"] += \
                int((bad & keep).sum())
            keep &= ~bad
    return columns, nondetections


def count_nondetections(report: CleaningReport, nondetections: Mapping[str, np.ndarray], keep: np.ndarray) -> None:
    for band, rows in nondetections.items():
        report.nondetections[band] += int((rows & keep).sum())
    report.nondetections = Counter({k: v for k, v in report.nondetections.items() if v})


def leave_out_empty_bands(columns: dict[str, np.ndarray], nondetections: Mapping[str, np.ndarray],
                          spec: CatalogSpec, report: CleaningReport, keep: np.ndarray, where: Path) -> None:
    """A band without a single detection among the kept rows carries nothing: left out (zero weight) and
    named in `report`, or, for a required band, a one-line error."""
    for band in spec.bands:
        detected = keep & (columns[schema.ivar_column(band.name)] > 0) & ~nondetections[band.name]
        if detected.any() or not keep.any():
            continue
        if band.name in spec.required_bands:
            raise GalaxypropError(f"{where}: required band '{band.name}' ({band.flux or band.mag}) has no detection "
                                  f"in any usable row; leave it out of required_bands")
        report.empty_bands.append(band.name)
        columns[schema.flux_column(band.name)] = np.zeros(len(keep))
        columns[schema.ivar_column(band.name)] = np.zeros(len(keep))
        nondetections[band.name] = np.zeros(len(keep), dtype=bool)


def read_catalog(path: str | Path, spec: CatalogSpec, max_rows: int | None = None,
                 seed: int = 0, targets: Mapping | None = None) -> tuple[pd.DataFrame, CleaningReport]:
    """Read a catalogue into the galaxyprop layout; drop and count the rows that cannot be used.

    `max_rows` keeps a seeded random subset (for quick profiles) before cleaning; `targets` (name ->
    `data.targets.TargetColumn` of this file's columns) become columns of the layout.
    """
    table = _Table.read(Path(path), spec.hdu, text_columns=(spec.id,) if spec.id else ())
    rows = np.arange(table.n_rows)
    if max_rows is not None and max_rows < table.n_rows:
        rows = np.sort(np.random.default_rng(seed).choice(table.n_rows, max_rows, replace=False))
        table = _Table(table.path, {k: v[rows] for k, v in table.columns.items()})
    report = CleaningReport(n_input=len(rows))
    keep = np.ones(len(rows), dtype=bool)

    redshift = table.get(spec.redshift, "redshift")
    bad_z = ~np.isfinite(redshift) | (redshift < 0)
    report.dropped[f"redshift missing or negative ({spec.redshift})"] += int(bad_z.sum())
    out_of_range = ~bad_z & ((redshift < spec.z_min) | (redshift > spec.z_max))
    report.dropped[f"redshift outside [{spec.z_min}, {spec.z_max}]"] += int(out_of_range.sum())
    keep &= ~bad_z & ~out_of_range

    where = f"{path}: id column '{spec.id}'"
    ids = schema.normalise_ids(table.get(spec.id, "id", numeric=False), where) if spec.id else rows
    photometry, nondetections = map_photometry(table, spec, report, keep)
    frame = {schema.ID: ids, schema.REDSHIFT: redshift, **photometry}
    for name, target in (targets or {}).items():
        frame[name] = target.values(lambda column, name=name: table.get(column, f"target {name}"))
        bad = keep & ~np.isfinite(frame[name])
        report.dropped[f"target {name} ({target.describe()}) missing or not finite"] += int(bad.sum())
        keep &= ~bad
    report.dropped = Counter({k: v for k, v in report.dropped.items() if v})
    leave_out_empty_bands(frame, nondetections, spec, report, keep, Path(path))
    count_nondetections(report, nondetections, keep)
    report.n_kept = int(keep.sum())
    if report.n_kept == 0:
        raise GalaxypropError(f"{path}: no usable rows after cleaning ({report.summary()})")
    return pd.DataFrame(frame)[keep].reset_index(drop=True), report


def mapped_batches(path: str | Path, spec: CatalogSpec, size: int, extra: tuple[str, ...] = (),
                   redshift: bool = False) -> Iterator[tuple[int, pd.DataFrame, CleaningReport]]:
    """A user's catalogue through a source's column map, `size` rows at a time: (first row, the usable
    rows in the layout (`id`, fluxes, inverse variances, `z` when `redshift` and the file has the map's
    redshift column, and the `extra` columns the file has, any case), the batch's cleaning report).
    No redshift is needed; the id is the row number where the map has no id column."""
    file = CatalogueFile(path)
    wanted = source_columns(spec, redshift=False)
    if redshift and spec.redshift.lower() in file.by_lower:
        extra = (*extra, spec.redshift)
    id_column = file.id_column(spec.id) if spec.id else None
    present = [c for c in extra if c.lower() in file.by_lower]
    names = file.find(wanted, "the column map") + ([id_column] if id_column else []) + file.find(present)
    start = 0
    for batch in file.column_batches(names, size, text=(id_column,) if id_column else ()):
        n = len(batch[names[0]])
        table = _Table(file.path, batch)
        report = CleaningReport(n_input=n)
        keep = np.ones(n, dtype=bool)
        ids = (schema.normalise_ids(batch[id_column], f"{path}: id column '{id_column}' (rows {start}-{start + n - 1})")
               if id_column else np.arange(start, start + n))
        photometry, nondetections = map_photometry(table, spec, report, keep)
        frame = {schema.ID: ids, **photometry}
        frame.update({schema.REDSHIFT if c == spec.redshift else c: batch[file.by_lower[c.lower()]] for c in present})
        count_nondetections(report, nondetections, keep)
        report.n_kept = int(keep.sum())
        report.dropped = Counter({k: v for k, v in report.dropped.items() if v})
        yield start, pd.DataFrame(frame)[keep].reset_index(drop=True), report
        start += n
