"""The one dataset layout every stage reads and writes.

Fluxes are Galactic-extinction-corrected AB nanomaggies; an inverse variance of 0 marks a band
that was not measured.
"""

from __future__ import annotations

from galaxyprop.errors import GalaxypropError

ID = "id"
REDSHIFT = "z"
SPLIT = "split"
PHOTSYS = "photsys"   # imaging system of the photometry (DESI: N or S)
SPLITS = ("train", "val", "test")

#: Targets the heads learn; each is a column of the prepared data.
TARGETS = {
    "z": "spectroscopic redshift",
    "kcorr_r01": "K-correction from observed SDSS r to ^{0.1}r (band shift 0.1)",
}


def flux_column(band: str) -> str:
    return f"flux_{band}"


def ivar_column(band: str) -> str:
    return f"flux_ivar_{band}"

#: Survey fields by PHOTSYS, as reports and the promotion gate name them.
FIELDS = {"N": "north", "S": "south"}


def field_name(photsys: str) -> str:
    return FIELDS.get(str(photsys).strip(), str(photsys).strip().lower())


def field_code(value: object, row: int | None = None) -> str | None:
    """The PHOTSYS code of a survey field given by its code or its name, in any case (`n`, `North`);
    None for a missing or empty value."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    if not text:
        return None
    for code, name in FIELDS.items():
        if text.upper() == code or text.lower() == name:
            return code
    where = f" (row {row})" if row is not None else ""
    raise GalaxypropError(f"unknown survey field {text!r}{where}; use one of "
                          f"{', '.join(f'{c} ({n})' for c, n in FIELDS.items())}")
