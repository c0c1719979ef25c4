"""A catalogue file (Parquet, FITS or CSV) read a few columns and `size` rows at a time.

Memory stays bounded by one batch. Array columns (FITS `MODELFLUX` (n, 5), Parquet lists) come
back as 2-d arrays; id columns are read as text from CSV, so that `gal00010` or `007` keep their
leading zeros (`schema.normalise_ids` then makes canonical integers int64).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.errors import GalaxypropError, reading

ID_COLUMNS = ("TARGETID", "targetid", "id", "ID", "objid", "OBJID")
PARQUET = (".parquet", ".pq")
FITS = (".fits", ".fit", ".fz")
FORMATS = "use .parquet, .fits or .csv"


def is_fits(path: Path) -> bool:
    return path.suffix.lower() in FITS or path.name.lower().endswith(".fits.gz")


class CatalogueFile:
    """Column names and row count on opening; columns read in batches."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if not self.path.exists():
            raise GalaxypropError(f"{self.path}: catalogue file not found")
        with reading(self.path, "catalogue file"):
            if self.suffix in PARQUET:
                import pyarrow.parquet as pq

                self.file = pq.ParquetFile(self.path)
                self.names, self.n_rows = self.file.schema_arrow.names, self.file.metadata.num_rows
            elif self.suffix == ".csv":
                self.names = list(pd.read_csv(self.path, nrows=0).columns)
                self.n_rows = sum(len(c) for c in pd.read_csv(self.path, usecols=self.names[:1], chunksize=1 << 20))
            elif is_fits(self.path):
                from astropy.io import fits

                with fits.open(self.path, memmap=True) as hdul:
                    table = next((h for h in hdul if isinstance(h, fits.BinTableHDU)), None)
                    if table is None:
                        raise GalaxypropError(f"{self.path}: no binary table HDU")
                    self.names, self.n_rows = list(table.columns.names), int(table.header["NAXIS2"])
            else:
                raise GalaxypropError(f"{self.path}: unsupported catalogue format '{self.suffix}' ({FORMATS})")
        self.by_lower = {n.lower(): n for n in self.names}

    def id_column(self, name: str | None = None) -> str | None:
        """The id column: `name` (matched in any case), else the first of ID_COLUMNS the file has."""
        if name is not None:
            return self.find([name], "the id")[0]
        return next((c for c in ID_COLUMNS if c in self.names), None)

    def find(self, wanted: list[str], needed_by: str = "the model") -> list[str]:
        """The file's names of the `wanted` columns, matched case-insensitively."""
        missing = [c for c in wanted if c.lower() not in self.by_lower]
        if missing:
            raise GalaxypropError(f"{self.path}: lacks column(s) {missing} that {needed_by} needs; "
                                  f"it has {self.names[:20]}")
        return [self.by_lower[c.lower()] for c in wanted]

    def read(self, columns: list[str], text: tuple[str, ...] = ()) -> pd.DataFrame:
        """These columns of every row."""
        parts = list(self.batches(columns, 1 << 20, text))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    def batches(self, columns: list[str], size: int, text: tuple[str, ...] = ()) -> Iterator[pd.DataFrame]:
        """Frames of `size` rows of 1-d `columns`; `text` columns are read as strings from CSV."""
        for batch in self.column_batches(columns, size, text):
            yield pd.DataFrame(batch)

    def column_batches(self, columns: list[str], size: int,
                       text: tuple[str, ...] = ()) -> Iterator[dict[str, np.ndarray]]:
        """Dicts column -> array (2-d for array columns) of `size` rows at a time."""
        with reading(self.path, "catalogue file"):
            yield from self._raw_batches(list(dict.fromkeys(columns)), size, text)

    def _raw_batches(self, columns: list[str], size: int, text: tuple[str, ...]) -> Iterator[dict[str, np.ndarray]]:
        if self.suffix in PARQUET:
            for batch in self.file.iter_batches(batch_size=size, columns=columns):
                yield {c: arrow_column(batch.column(c)) for c in columns}
        elif self.suffix == ".csv":
            dtypes = {c: str for c in text}
            for frame in pd.read_csv(self.path, usecols=columns, chunksize=size, dtype=dtypes, keep_default_na=True):
                yield {c: frame[c].to_numpy() for c in columns}
        else:
            from astropy.io import fits

            with fits.open(self.path, memmap=True) as hdul:
                data = next(h for h in hdul if isinstance(h, fits.BinTableHDU)).data
                for start in range(0, self.n_rows, size):
                    rows = data[start:start + size]
                    yield {c: native(np.asarray(rows[c])) for c in columns}


def native(values: np.ndarray) -> np.ndarray:
    """FITS big-endian numbers in this machine's byte order (pandas and numpy maths want it)."""
    if values.dtype.kind in "biuf" and not values.dtype.isnative:
        return values.astype(values.dtype.newbyteorder("="))
    return values


def arrow_column(array) -> np.ndarray:
    """A Parquet column as numpy: a fixed-shape tensor (pyarrow's extension type) as a 2-d array of its
    flattened cells (1-d where each cell holds one value), another extension type as its storage, a list
    column as a 2-d array (`stack_lists`), anything else as pandas reads it (nulls as NaN or None)."""
    import pyarrow as pa

    if isinstance(array.type, pa.FixedShapeTensorType):
        values = array.to_numpy_ndarray().reshape(len(array), -1)
        return values[:, 0] if values.shape[1] == 1 else values
    if isinstance(array.type, pa.ExtensionType):
        array = array.storage
    return stack_lists(array.to_pandas().to_numpy())


def stack_lists(values: np.ndarray) -> np.ndarray:
    """A Parquet list column as a 2-d float array; any other column as it is."""
    if values.dtype == object and len(values) and isinstance(values[0], (list, np.ndarray)):
        return np.stack([np.asarray(v, dtype=float) for v in values])
    return values


def as_numbers(frame: pd.DataFrame, columns: Mapping[str, str], path: Path) -> pd.DataFrame:
    """`frame` with each of `columns` (frame column -> the file's name for it) as numbers: a text column
    whose values all read as numbers is converted, one with a value that is not a number is a one-line
    error naming the file, the column, the row and the value."""
    for name, column in columns.items():
        if pd.api.types.is_numeric_dtype(frame[name]):
            continue
        numbers = pd.to_numeric(frame[name], errors="coerce")
        bad = (numbers.isna() & frame[name].notna()).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise GalaxypropError(f"{path}: column '{column}' holds text, not numbers "
                                  f"(row {row}: {frame[name].iloc[row]!r}; {int(bad.sum())} such rows)")
        frame[name] = numbers
    return frame
