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


def embedding_names(dim: int) -> list[str]:
    """The columns of a `dim`-dimensional embedding feature source (e000, e001, ...)."""
    return [f"e{i:03d}" for i in range(dim)]


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


_CANONICAL_INTEGER = r"-?(?:0|[1-9][0-9]{0,17})"


def normalise_ids(values, where: str, unique: bool = True):
    """Galaxy ids as one type everywhere: int64 (DESI TARGETID, SDSS objid) or strings (`gal00010`).

    Text that is an integer written canonically (no sign but '-', no leading zeros) becomes int64, so
    an id read from CSV, HDF5 bytes or Parquet strings matches the same id stored as an integer;
    any other text stays a string (leading zeros are kept). Missing ids, integers mixed with other
    text objects and (with `unique`) repeated ids are errors naming `where`."""
    import numpy as np
    import pandas as pd

    array = np.asarray(values)
    if array.ndim != 1:
        raise GalaxypropError(f"{where}: ids must be one value per row, got shape {array.shape}")
    if array.dtype.kind in "iu":
        ids = array.astype(np.int64)
    elif array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            raise GalaxypropError(f"{where}: id of row {int(np.argmax(bad))} is {float(array[np.argmax(bad)])}, "
                                  "not an integer or a name")
        ids = array.astype(np.int64)
    else:
        items = [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
        kinds = {type(v) for v in items}
        missing = [i for i, v in enumerate(items) if v is None or (isinstance(v, float) and v != v)
                   or (isinstance(v, str) and not v.strip())]
        if missing:
            raise GalaxypropError(f"{where}: row {missing[0]} has no id ({len(missing)} such rows)")
        if len(kinds) > 1 and str in kinds:
            raise GalaxypropError(f"{where}: ids mix types {sorted(k.__name__ for k in kinds)}; "
                                  "give every id as an integer or every id as a name")
        text = pd.Series([str(v).strip() for v in items], dtype=object)
        integer = text.str.fullmatch(_CANONICAL_INTEGER).to_numpy(dtype=bool)
        if len(text) and integer.all():
            ids = text.astype(np.int64).to_numpy()
        elif integer.any():
            first, other = int(np.argmax(integer)), int(np.argmax(~integer))
            raise GalaxypropError(f"{where}: ids mix integers (row {first}: {text[first]}) and names (row {other}: "
                                  f"{text[other]!r}; {int((~integer).sum())} names, {int(integer.sum())} integers); "
                                  "give every id as an integer or every id as a name")
        else:
            ids = text.to_numpy(dtype=object)
    if unique:
        repeated = pd.Series(ids).duplicated()
        if repeated.any():
            row = int(np.argmax(repeated.to_numpy()))
            shown = repr(ids[row]) if isinstance(ids[row], str) else str(ids[row])
            raise GalaxypropError(f"{where}: id {shown} is repeated (row {row}; "
                                  f"{int(repeated.sum())} repeated ids); ids must be unique")
    return ids
