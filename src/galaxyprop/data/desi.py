"""One reader for DESI-like data: AstroCLIP images + spectra (any layout: flat or grouped HDF5,
Parquet shards) joined with FastSpecFit on TARGETID.

It serves the real files and the mock survey alike. The result is the galaxyprop layout
(`schema`): one row per galaxy with an image and a catalogue entry, its (global) row in the image
file (grouped / Parquet layouts: also its group or shard and in-group row),
Galactic-extinction-corrected fluxes, PHOTSYS, and the targets from their FastSpecFit columns. Unusable rows are
dropped and counted by reason, as in the catalogue reader.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd

from galaxyprop.data import schema
from galaxyprop.data.astroclip import AstroclipFile
from galaxyprop.data.catalog import CleaningReport
from galaxyprop.data.fastspecfit import read_fastspec
from galaxyprop.data.targets import TargetColumn
from galaxyprop.errors import GalaxypropError

BANDS = ("g", "r", "z", "W1")
#: kcorrect response of each band per PHOTSYS (N: BASS g,r + MzLS z; S: DECam g,r,z; both WISE W1).
RESPONSES = {"S": {"g": "decam_g", "r": "decam_r", "z": "decam_z", "W1": "wise_w1"},
             "N": {"g": "bass_g", "r": "bass_r", "z": "mzls_z", "W1": "wise_w1"}}
IMAGE_ROW = "image_row"
IMAGE_GROUP, IMAGE_GROUP_ROW = "image_group", "image_group_row"   # grouped / Parquet layouts only
REDSHIFT_TOLERANCE = 1e-3


def _column(columns: dict, path, name: str, role: str) -> np.ndarray:
    if name not in columns:
        raise GalaxypropError(f"{path}: column '{name}' ({role}) not found in METADATA/SPECPHOT/FASTSPEC")
    return columns[name]


def read_desi(images_path: str | os.PathLike, catalog_path: str | os.PathLike,
              required_bands=BANDS, z_min: float = 0.0, z_max: float = np.inf,
              max_rows: int | None = None, seed: int = 0,
              targets: Mapping[str, TargetColumn] | None = None) -> tuple[pd.DataFrame, CleaningReport]:
    """Join the two files on TARGETID; keep galaxies with a usable redshift, photometry and the
    `targets` (prepared name -> catalogue column, see `data.targets`)."""
    unknown = [b for b in required_bands if b not in BANDS]
    if unknown:
        raise GalaxypropError(f"required bands {unknown} are not DESI bands {list(BANDS)}")
    with AstroclipFile(images_path) as images:
        targetids, image_z = images.index()
        rows = np.arange(len(targetids))
        if max_rows is not None and max_rows < len(rows):
            rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
        origin = images.origin(rows) if images.layout != "flat" else None
    targetids = schema.normalise_ids(targetids, f"{images_path}: targetids")
    if targetids.dtype.kind != "i":           # FastSpecFit's TARGETID is an integer
        raise GalaxypropError(f"{images_path}: target ids are not integers (e.g. {targetids[0]!r}), "
                              "so they cannot match FastSpecFit TARGETID")
    report = CleaningReport(n_input=len(rows))
    dropped: Counter = Counter()

    columns = read_fastspec(catalog_path)
    catalog_ids = columns["TARGETID"]
    if len(np.unique(catalog_ids)) != len(catalog_ids):
        raise GalaxypropError(f"{catalog_path}: TARGETID has duplicates")
    order = np.argsort(catalog_ids)
    position = np.searchsorted(catalog_ids[order], targetids[rows])
    position = np.clip(position, 0, len(order) - 1)
    match = catalog_ids[order][position] == targetids[rows]
    dropped[f"TARGETID not in {os.path.basename(catalog_path)}"] += int((~match).sum())
    keep = match.copy()
    cat = order[position]                      # catalogue row of every image row (where matched)

    z = _column(columns, catalog_path, "Z", "redshift").astype(float)[cat]
    bad_z = ~np.isfinite(z) | (z < 0)
    dropped["redshift Z missing or negative"] += int((bad_z & keep).sum())
    keep &= ~bad_z
    out_of_range = (z < z_min) | (z > z_max)
    dropped[f"redshift outside [{z_min}, {z_max}]"] += int((out_of_range & keep).sum())
    keep &= ~out_of_range
    disagree = np.abs(z - image_z[rows]) > REDSHIFT_TOLERANCE
    dropped["Z differs between the catalogue and the image file"] += int((disagree & keep).sum())
    keep &= ~disagree

    photsys = np.char.strip(np.asarray(_column(columns, catalog_path, "PHOTSYS", "photometric system"))
                            .astype(str))[cat]
    bad_photsys = ~np.isin(photsys, list(RESPONSES))
    dropped[f"PHOTSYS not one of {sorted(RESPONSES)}"] += int((bad_photsys & keep).sum())
    keep &= ~bad_photsys

    frame = {schema.ID: targetids[rows], schema.REDSHIFT: z, schema.PHOTSYS: photsys, IMAGE_ROW: rows}
    if origin is not None:
        frame[IMAGE_GROUP], frame[IMAGE_GROUP_ROW] = origin[0].astype(str), origin[1].astype(np.int64)
    for band in BANDS:
        flux, ivar = (values[cat] for values in dereddened(columns, catalog_path, band))
        valid = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
        if band in required_bands:
            bad = ~valid | (flux <= 0)
            dropped[f"{band} flux unusable: non-finite or non-positive (FLUX_{band.upper()})"] += int((bad & keep).sum())
            keep &= ~bad
        frame[schema.flux_column(band)] = np.where(valid, flux, 0.0)
        frame[schema.ivar_column(band)] = np.where(valid, ivar, 0.0)
    for name, target in (targets or {}).items():
        if target.from_kcorrect:
            raise GalaxypropError(f"target '{name}': '{target.column}' is a catalogue source's kcorrect fit; "
                                  "a DESI source reads its targets from FastSpecFit columns")
        values = target.values(lambda c, name=name: _column(columns, catalog_path, c, f"target {name}").astype(float))[cat]
        bad = ~np.isfinite(values)
        dropped[f"target {name} ({target.describe()}) missing or not finite"] += int((bad & keep).sum())
        keep &= ~bad
        frame[name] = values
    report.dropped = Counter({k: v for k, v in dropped.items() if v})
    report.n_kept = int(keep.sum())
    if report.n_kept == 0:
        raise GalaxypropError(f"{images_path} + {catalog_path}: no usable rows ({report.summary()})")
    return pd.DataFrame(frame)[keep].reset_index(drop=True), report


def dereddened(columns: dict, path, band: str) -> tuple[np.ndarray, np.ndarray]:
    """A band's flux and inverse variance (nanomaggies) of every catalogue row, Galactic extinction
    removed where the catalogue gives MW_TRANSMISSION."""
    key = band.upper()
    flux = _column(columns, path, f"FLUX_{key}", f"band {band} flux").astype(float)
    ivar = _column(columns, path, f"FLUX_IVAR_{key}", f"band {band} ivar").astype(float)
    transmission = columns.get(f"MW_TRANSMISSION_{key}")
    if transmission is not None:
        transmission = transmission.astype(float)
        flux, ivar = flux / transmission, ivar * transmission**2
    return flux, ivar


def fastspec_fluxes(path: str | os.PathLike) -> pd.DataFrame:
    """A FastSpecFit catalogue's TARGETID, PHOTSYS and dereddened flux and ivar of every band, as the
    prepared splits name them (what a multimodal model is given beside the cutouts)."""
    columns = read_fastspec(path)
    frame = {schema.ID: schema.normalise_ids(columns["TARGETID"], f"{path}: TARGETID")}
    if "PHOTSYS" in columns:
        frame[schema.PHOTSYS] = np.char.strip(np.asarray(columns["PHOTSYS"]).astype(str))
    for band in BANDS:
        frame[schema.flux_column(band)], frame[schema.ivar_column(band)] = dereddened(columns, path, band)
    return pd.DataFrame(frame)


def band_responses(band: str) -> dict[str, str]:
    """kcorrect response of a DESI band for each PHOTSYS."""
    return {photsys: responses[band] for photsys, responses in RESPONSES.items()}
