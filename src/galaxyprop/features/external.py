"""Embeddings made elsewhere (e.g. exported from AstroCLIP), read from a file keyed by TARGETID.

HDF5: an id dataset and a (N, d) embedding dataset. Parquet: an id column and either one
list-valued column or the columns sharing a prefix (e000, e001, ...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.data import schema
from galaxyprop.data.schema import embedding_names
from galaxyprop.errors import GalaxypropError, reading
from galaxyprop.heads.base import check_features

ID_CANDIDATES = ("TARGETID", "targetid", "targetids", "id")


@dataclass(frozen=True)
class JoinReport:
    """How the external embeddings met the catalogue."""

    n_catalogue: int
    n_matched: int
    n_missing: int            # catalogue ids with no embedding (dropped)
    n_duplicate_ids: int      # ids repeated in the file (first kept)

    def summary(self) -> str:
        return (f"{self.n_matched} of {self.n_catalogue} galaxies have an external embedding; "
                f"{self.n_missing} missing (dropped), {self.n_duplicate_ids} duplicate ids in the file")


def read_external_embeddings(path: str | os.PathLike, embedding: str, id_key: str | None = None) -> pd.DataFrame:
    """A frame `id`, e000... from an HDF5 dataset / Parquet column(s) named `embedding`."""
    path = Path(path)
    with reading(path, "external embeddings file"):
        if path.suffix.lower() in (".h5", ".hdf5"):
            ids, matrix = _read_hdf5(path, embedding, id_key)
        elif path.suffix.lower() == ".parquet":
            ids, matrix = _read_parquet(path, embedding, id_key)
        else:
            raise GalaxypropError(f"{path}: external embeddings must be .h5/.hdf5 or .parquet")
    if matrix.ndim != 2 or len(matrix) != len(ids):
        raise GalaxypropError(f"{path}: '{embedding}' must be an (N, d) matrix with one row per id, "
                              f"got {matrix.shape} for {len(ids)} ids")
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise GalaxypropError(f"{path}: embedding row {int(np.argmax(bad))} (id {ids[np.argmax(bad)]}) "
                              f"has non-finite values ({int(bad.sum())} such rows)")
    frame = pd.DataFrame(matrix.astype(np.float32), columns=embedding_names(matrix.shape[1]))
    frame.insert(0, schema.ID, schema.normalise_ids(ids, f"{path}: ids", unique=False))   # repeats: join_embeddings
    return frame


def _id_key(available, id_key: str | None, path: Path) -> str:
    keys = [id_key] if id_key else [k for k in ID_CANDIDATES if k in available]
    if not keys or keys[0] not in available:
        wanted = id_key or " / ".join(ID_CANDIDATES)
        raise GalaxypropError(f"{path}: no id column/dataset '{wanted}' (has {sorted(available)})")
    return keys[0]


def _read_hdf5(path: Path, embedding: str, id_key: str | None) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as handle:
        if embedding not in handle:
            raise GalaxypropError(f"{path}: no dataset '{embedding}' (has {sorted(handle.keys())})")
        return np.asarray(handle[_id_key(handle.keys(), id_key, path)][:]), np.asarray(handle[embedding][:])


def _read_parquet(path: Path, embedding: str, id_key: str | None) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_parquet(path)
    ids = frame[_id_key(frame.columns, id_key, path)].to_numpy()
    if embedding in frame.columns:
        return ids, np.stack(frame[embedding].to_numpy())
    columns = [c for c in frame.columns if str(c).startswith(embedding)]
    if not columns:
        raise GalaxypropError(f"{path}: no column '{embedding}' nor columns starting with it")
    return ids, frame[columns].to_numpy()


def join_embeddings(catalogue: pd.DataFrame, embeddings: pd.DataFrame,
                    expected_dim: int | None = None) -> tuple[pd.DataFrame, JoinReport]:
    """The embeddings of the catalogue's galaxies in catalogue order (missing ids dropped and counted)."""
    dim = embeddings.shape[1] - 1
    if expected_dim is not None and dim != expected_dim:
        raise GalaxypropError(f"external embeddings have dimension {dim}, expected {expected_dim}")
    duplicates = int(embeddings[schema.ID].duplicated().sum())
    unique = embeddings.drop_duplicates(schema.ID)
    keys = catalogue[[schema.ID]]
    if (keys[schema.ID].dtype.kind == "O") != (unique[schema.ID].dtype.kind == "O"):
        # integers on one side, names on the other (normalise_ids made every integer-like name an integer)
        unique = unique.iloc[:0].astype({schema.ID: keys[schema.ID].dtype})
    joined = keys.merge(unique, on=schema.ID, how="inner", validate="one_to_one")
    report = JoinReport(len(catalogue), len(joined), len(catalogue) - len(joined), duplicates)
    return joined, report


class PrecomputedEmbeddings:
    """The feature encoder of external embeddings: the input already is the feature matrix."""

    input_kind = "embeddings"

    def __init__(self, dim: int):
        self.dim = int(dim)

    @property
    def names(self) -> list[str]:
        return embedding_names(self.dim)

    def transform(self, inputs: np.ndarray, **_) -> np.ndarray:
        matrix = np.asarray(inputs)
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise GalaxypropError(f"embeddings must have shape (N, {self.dim}), got {matrix.shape}")
        return check_features(matrix, self.dim)
