"""The one dataset layout every stage reads and writes.

Fluxes are Galactic-extinction-corrected AB nanomaggies; an inverse variance of 0 marks a band
that was not measured.
"""

from __future__ import annotations

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
