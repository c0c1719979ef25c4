"""Generic catalogue reader (FITS, CSV, Parquet) driven by a column map.

The column map names, per band, either a flux (with an inverse variance or an error) or a
magnitude with its error, the zero point of the flux units, an optional Galactic extinction
column and an AB offset. Array columns are addressed as ``NAME[i]``. Rows that cannot be used
are dropped and counted by reason, never silently.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError, reading
from galaxyprop.physics import magnitudes

_INDEXED = re.compile(r"^(?P<name>[^\[\]]+)\[(?P<index>\d+)\]$")
# Magnitudes outside this range are catalogue sentinels (0, 99, -9999), not measurements.
_VALID_MAG_RANGE = (0.0, 50.0)


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

    @classmethod
    def from_mapping(cls, name: str, spec: Mapping) -> "BandSpec":
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
    def from_params(cls, data: Mapping) -> "CatalogSpec":
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

    @property
    def n_dropped(self) -> int:
        return self.n_input - self.n_kept

    def summary(self) -> str:
        reasons = "; ".join(f"{reason}: {n}" for reason, n in sorted(self.dropped.items()))
        return f"kept {self.n_kept} of {self.n_input} rows, dropped {self.n_dropped}" + (
            f" ({reasons})" if reasons else ""
        )

    def as_dict(self) -> dict:
        return {"n_input": self.n_input, "n_kept": self.n_kept, "n_dropped": self.n_dropped,
                "dropped_by_reason": dict(self.dropped)}


class _Table:
    """Numeric columns of a catalogue file, addressed by name or ``NAME[i]``."""

    def __init__(self, path: Path, hdu: int | str):
        self.path = path
        suffix = path.suffix.lower()
        with reading(path, "catalogue file"):
            if suffix in (".fits", ".fit", ".fz") or path.name.endswith(".fits.gz"):
                from astropy.table import Table

                table = Table.read(path, hdu=hdu, format="fits", memmap=False)
                self.columns = {name: np.asarray(table[name]) for name in table.colnames}
            elif suffix == ".csv":
                self.columns = {k: v.to_numpy() for k, v in pd.read_csv(path).items()}
            elif suffix in (".parquet", ".pq"):
                frame = pd.read_parquet(path)
                self.columns = {k: _stack_lists(v.to_numpy()) for k, v in frame.items()}
            else:
                raise GalaxypropError(f"{path}: unsupported catalogue format '{suffix}' "
                                      "(use .fits, .csv or .parquet)")
        lengths = {len(v) for v in self.columns.values()}
        self.n_rows = lengths.pop() if lengths else 0

    def get(self, expression: str, role: str, numeric: bool = True) -> np.ndarray:
        match = _INDEXED.match(expression)
        name, index = (match["name"], int(match["index"])) if match else (expression, None)
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


def _stack_lists(values: np.ndarray) -> np.ndarray:
    if values.dtype == object and len(values) and isinstance(values[0], (list, np.ndarray)):
        return np.stack([np.asarray(v, dtype=float) for v in values])
    return values


def _band_photometry(table: _Table, band: BandSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AB nanomaggies, inverse variance and a validity mask for one band."""
    if band.flux is not None:
        raw = table.get(band.flux, f"band {band.name} flux")
        if band.flux_ivar is not None:
            raw_ivar = table.get(band.flux_ivar, f"band {band.name} flux_ivar")
        else:
            raw_ivar = magnitudes.flux_err_to_ivar(table.get(band.flux_err, f"band {band.name} flux_err"))
        scale = magnitudes.rescale_flux(1.0, band.zeropoint)
        flux, ivar = raw * scale, raw_ivar / scale**2
        valid = np.isfinite(flux) & (flux > 0) & np.isfinite(ivar) & (ivar > 0)
    else:
        mag = table.get(band.mag, f"band {band.name} mag")
        mag_err = table.get(band.mag_err, f"band {band.name} mag_err")
        valid = (np.isfinite(mag) & (mag > _VALID_MAG_RANGE[0]) & (mag < _VALID_MAG_RANGE[1])
                 & np.isfinite(mag_err) & (mag_err > 0))
        flux = magnitudes.mag_to_flux(np.where(valid, mag, np.nan), band.zeropoint)
        ivar = magnitudes.mag_err_to_flux_ivar(flux, np.where(valid, mag_err, np.nan))
    correction = 10.0 ** (-0.4 * band.ab_offset)
    if band.extinction is not None:
        extinction = table.get(band.extinction, f"band {band.name} extinction")
        correction = correction * 10.0 ** (0.4 * band.extinction_factor * extinction)
        valid &= np.isfinite(extinction)
    with np.errstate(invalid="ignore"):
        flux, ivar = flux * correction, ivar / correction**2
    return np.where(valid, flux, 0.0), np.where(valid, ivar, 0.0), valid


def read_catalog(path: str | Path, spec: CatalogSpec, max_rows: int | None = None,
                 seed: int = 0) -> tuple[pd.DataFrame, CleaningReport]:
    """Read a catalogue into the galaxyprop layout; drop and count the rows that cannot be used.

    `max_rows` keeps a seeded random subset (for quick profiles) before cleaning.
    """
    table = _Table(Path(path), spec.hdu)
    rows = np.arange(table.n_rows)
    if max_rows is not None and max_rows < table.n_rows:
        rows = np.sort(np.random.default_rng(seed).choice(table.n_rows, max_rows, replace=False))
    report = CleaningReport(n_input=len(rows))
    keep = np.ones(len(rows), dtype=bool)

    redshift = table.get(spec.redshift, "redshift")[rows]
    bad_z = ~np.isfinite(redshift) | (redshift < 0)
    report.dropped[f"redshift missing or negative ({spec.redshift})"] += int(bad_z.sum())
    out_of_range = ~bad_z & ((redshift < spec.z_min) | (redshift > spec.z_max))
    report.dropped[f"redshift outside [{spec.z_min}, {spec.z_max}]"] += int(out_of_range.sum())
    keep &= ~bad_z & ~out_of_range

    ids = table.get(spec.id, "id", numeric=False)[rows] if spec.id else rows
    frame = {schema.ID: ids, schema.REDSHIFT: redshift}
    for band in spec.bands:
        flux, ivar, valid = _band_photometry(table, band)
        frame[schema.flux_column(band.name)] = flux[rows]
        frame[schema.ivar_column(band.name)] = ivar[rows]
        if band.name in spec.required_bands:
            source = band.flux or band.mag
            bad = ~valid[rows]
            report.dropped[f"{band.name} flux unusable: non-finite or non-positive ({source})"] += \
                int((bad & keep).sum())
            keep &= ~bad
    report.dropped = Counter({k: v for k, v in report.dropped.items() if v})
    report.n_kept = int(keep.sum())
    if report.n_kept == 0:
        raise GalaxypropError(f"{path}: no usable rows after cleaning ({report.summary()})")
    result = pd.DataFrame(frame)[keep].reset_index(drop=True)
    if result[schema.ID].duplicated().any():
        dup = result[schema.ID][result[schema.ID].duplicated()].iloc[0]
        raise GalaxypropError(f"{path}: id column '{spec.id}' is not unique (e.g. {dup})")
    return result, report
