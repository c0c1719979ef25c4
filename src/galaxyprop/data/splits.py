"""Seeded train / validation / test splits stratified in redshift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError


def stratified_split(redshift: np.ndarray, fractions: dict[str, float], seed: int,
                     n_bins: int = 10) -> np.ndarray:
    """Assign each galaxy to a split so that every redshift quantile bin is split alike."""
    total = sum(fractions.values())
    if set(fractions) != set(schema.SPLITS) or not np.isclose(total, 1.0):
        raise GalaxypropError(f"split fractions must give {list(schema.SPLITS)} summing to 1, got {fractions}")
    redshift = np.asarray(redshift, dtype=float)
    n_bins = max(1, min(n_bins, len(redshift) // 20))
    edges = np.quantile(redshift, np.linspace(0, 1, n_bins + 1)[1:-1])
    bins = np.searchsorted(edges, redshift, side="right")
    rng = np.random.default_rng(seed)
    labels = np.empty(len(redshift), dtype=object)
    cumulative = np.cumsum([fractions[s] for s in schema.SPLITS])
    for b in np.unique(bins):
        members = rng.permutation(np.flatnonzero(bins == b))
        cuts = np.round(cumulative * len(members)).astype(int)
        for name, part in zip(schema.SPLITS, np.split(members, cuts[:-1]), strict=True):
            labels[part] = name
    return labels


def file_split_labels(redshift: np.ndarray, file_split: np.ndarray, fractions: dict[str, float], seed: int,
                      n_bins: int = 10) -> np.ndarray:
    """Splits that keep the image file's own: its test rows are the test split; a seeded, redshift-
    stratified share val / (train + val) of its train rows is the validation split."""
    file_split = np.asarray(file_split, dtype=object)
    unknown = sorted(set(file_split) - {"train", "test"})
    if unknown:
        raise GalaxypropError(f"the file's own split has labels {unknown}; expected 'train' and 'test'")
    train = np.flatnonzero(file_split == "train")
    if len(train) == 0 or not (file_split == "test").any():
        raise GalaxypropError(f"the file's own split has {len(train)} train and "
                              f"{int((file_split == 'test').sum())} test rows; both are needed")
    share = fractions["val"] / (fractions["train"] + fractions["val"])
    labels = np.full(len(file_split), "test", dtype=object)
    labels[train] = stratified_split(np.asarray(redshift, float)[train],
                                     {"train": 1.0 - share, "val": share, "test": 0.0}, seed, n_bins)
    return labels


def split_frame(frame: pd.DataFrame, fractions: dict[str, float], seed: int, n_bins: int = 10,
                file_split: np.ndarray | None = None) -> dict[str, pd.DataFrame]:
    """The frame's train / val / test parts: stratified in redshift, or (given `file_split`, the
    file's own 'train' / 'test' of every frame row) keeping the file's test rows as test."""
    if file_split is None:
        labels = stratified_split(frame[schema.REDSHIFT].to_numpy(), fractions, seed, n_bins)
    else:
        labels = file_split_labels(frame[schema.REDSHIFT].to_numpy(), file_split, fractions, seed, n_bins)
    return {name: frame[labels == name].reset_index(drop=True) for name in schema.SPLITS}
