"""The FastSpecFit value-added catalogue layout (FITS).

Older releases put everything fitted in `FASTSPEC` (with `METADATA` holding the targeting
photometry); newer ones move the photometric fits (`KCORR01_*`, `ABSMAG01_*`, `LOGMSTAR`) to
`SPECPHOT`. The HDUs are row-aligned on `TARGETID`. Fluxes in METADATA are as observed;
`MW_TRANSMISSION_*` removes the Galactic extinction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from galaxyprop.data.io import atomic_path
from galaxyprop.errors import GalaxypropError, reading

LABEL_HDUS = ("SPECPHOT", "FASTSPEC")


def write_fastspec(path: str | os.PathLike, metadata: Mapping[str, np.ndarray],
                   fits_columns: Mapping[str, np.ndarray], layout: str = "specphot",
                   extra_hdus: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> None:
    """Write METADATA plus the fitted columns in SPECPHOT (newer layout) or FASTSPEC (older)."""
    from astropy.io import fits
    from astropy.table import Table

    if layout not in ("specphot", "fastspec"):
        raise GalaxypropError(f"unknown FastSpecFit layout '{layout}' (specphot or fastspec)")
    tables = {"METADATA": metadata}
    ids = {"TARGETID": metadata["TARGETID"]}
    if layout == "specphot":
        tables["SPECPHOT"] = {**ids, **fits_columns}
        tables["FASTSPEC"] = {**ids, "Z": metadata["Z"]}
    else:
        tables["FASTSPEC"] = {**ids, "Z": metadata["Z"], **fits_columns}
    tables.update(extra_hdus or {})
    hdus = [fits.PrimaryHDU()]
    for name, columns in tables.items():
        hdu = fits.table_to_hdu(Table(dict(columns)))
        hdu.name = name
        hdus.append(hdu)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)


def is_fastspec(path: str | os.PathLike) -> bool:
    """Whether `path` is a FastSpecFit catalogue: a FITS file with a METADATA HDU."""
    from astropy.io import fits

    path = Path(path)
    if path.suffix.lower() not in (".fits", ".fit", ".fz") and not path.name.lower().endswith(".fits.gz"):
        return False
    try:
        with fits.open(path, memmap=True) as hdul:
            return "METADATA" in hdul
    except OSError:
        return False


def read_fastspec(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of METADATA merged with the fitted columns (SPECPHOT if present, else FASTSPEC)."""
    from astropy.io import fits

    path = Path(path)
    with reading(path, "FastSpecFit catalogue"), fits.open(path, memmap=False) as hdus:
        names = [h.name for h in hdus]
        if "METADATA" not in names:
            raise GalaxypropError(f"{path}: no METADATA HDU (a FastSpecFit file has METADATA and "
                                  f"SPECPHOT or FASTSPEC; found {names})")
        columns = _columns(path, hdus["METADATA"])
        for name in LABEL_HDUS:
            if name in names:
                fitted = _columns(path, hdus[name])
                if not np.array_equal(fitted.get("TARGETID"), columns.get("TARGETID")):
                    raise GalaxypropError(f"{path}: TARGETID of HDU {name} does not match METADATA row by row")
                columns.update({k: v for k, v in fitted.items() if k not in columns})
    if "TARGETID" not in columns:
        raise GalaxypropError(f"{path}: HDU METADATA has no TARGETID column")
    return columns


def fastspec_column_names(path: str | os.PathLike) -> set[str]:
    """The columns `read_fastspec` gives (METADATA's and the fitted HDU's), from the file's headers alone."""
    from astropy.io import fits

    path = Path(path)
    with reading(path, "FastSpecFit catalogue"), fits.open(path, memmap=True) as hdus:
        return {name.upper() for hdu in hdus if hdu.name in ("METADATA", *LABEL_HDUS)
                and getattr(hdu, "columns", None) is not None for name in hdu.columns.names}


def _columns(path: Path, hdu) -> dict[str, np.ndarray]:
    if hdu.data is None or not hasattr(hdu.data, "columns"):
        raise GalaxypropError(f"{path}: HDU {hdu.name} is not a table")
    return {name.upper(): np.asarray(hdu.data[name]) for name in hdu.data.columns.names}
