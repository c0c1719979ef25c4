"""Seeded train / validation / test splits stratified in redshift and, within each redshift bin, by survey
field and brightness: the validation split calibrates every served density per field, so a validation
field whose galaxies happen to be brighter than the test field's (0.1 mag, 3 sigma, in the default run
before this stratification: every model over-covered on the validation north and under-covered on the
test north) would make its calibration miss on the test split and in use."""

from __future__ import annotations

import numpy as np
import pandas as pd

from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError


def _quantile_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Each value's quantile bin (0 .. n_bins - 1); a value that is not finite gets bin n_bins."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        return np.full(len(values), n_bins)
    edges = np.quantile(values[finite], np.linspace(0, 1, n_bins + 1)[1:-1])
    return np.where(finite, np.searchsorted(edges, np.where(finite, values, 0.0), side="right"), n_bins)


def stratified_split(redshift: np.ndarray, fractions: dict[str, float], seed: int,
                     n_bins: int = 10, strata: np.ndarray | None = None) -> np.ndarray:
    """Assign each galaxy to a split so that every redshift quantile bin (and, given `strata`, every
    stratum within it: e.g. field and brightness) is split alike."""
    total = sum(fractions.values())
    if set(fractions) != set(schema.SPLITS) or not np.isclose(total, 1.0):
        raise GalaxypropError(f"split fractions must give {list(schema.SPLITS)} summing to 1, got {fractions}")
    redshift = np.asarray(redshift, dtype=float)
    n_bins = max(1, min(n_bins, len(redshift) // 20))
    bins = _quantile_bins(redshift, n_bins)
    if strata is not None:
        codes = np.unique(np.asarray(strata, dtype=str), return_inverse=True)[1]
        bins = bins * (int(codes.max()) + 1) + codes
    rng = np.random.default_rng(seed)
    labels = np.empty(len(redshift), dtype=object)
    cumulative = np.cumsum([fractions[s] for s in schema.SPLITS])
    for b in np.unique(bins):
        members = rng.permutation(np.flatnonzero(bins == b))
        cuts = np.round(cumulative * len(members)).astype(int)
        for name, part in zip(schema.SPLITS, np.split(members, cuts[:-1]), strict=True):
            labels[part] = name
    return labels


def strata_of(frame: pd.DataFrame, n_brightness_bins: int = 3, band: str = "r",
              by_field: bool = True) -> np.ndarray | None:
    """Each galaxy's stratum within its redshift bin: its survey field (PHOTSYS, `by_field`) and its
    brightness tercile (the `band` flux, or the first flux column a source has); None when there is
    neither (the split is then stratified in redshift alone)."""
    parts = []
    if by_field and schema.PHOTSYS in frame:
        parts.append(frame[schema.PHOTSYS].astype(str).to_numpy())
    flux = schema.flux_column(band)
    flux = flux if flux in frame else next((c for c in frame.columns if str(c).startswith("flux_")
                                            and not str(c).startswith("flux_ivar")), None)
    if flux is not None and n_brightness_bins > 1:
        parts.append(_quantile_bins(frame[flux].to_numpy(float), n_brightness_bins).astype(str))
    if not parts:
        return None
    return np.array(["/".join(values) for values in zip(*parts, strict=True)], dtype=object)


def file_split_labels(redshift: np.ndarray, file_split: np.ndarray, fractions: dict[str, float], seed: int,
                      n_bins: int = 10, strata: np.ndarray | None = None) -> np.ndarray:
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
                                     {"train": 1.0 - share, "val": share, "test": 0.0}, seed, n_bins,
                                     None if strata is None else np.asarray(strata)[train])
    return labels


def split_frame(frame: pd.DataFrame, fractions: dict[str, float], seed: int, n_bins: int = 10,
                file_split: np.ndarray | None = None, n_brightness_bins: int = 3,
                by_field: bool = True) -> dict[str, pd.DataFrame]:
    """The frame's train / val / test parts: stratified in redshift, field and brightness (`strata_of`),
    or (given `file_split`, the file's own 'train' / 'test' of every frame row) keeping the file's test
    rows as test and stratifying the validation share of its train rows."""
    strata = strata_of(frame, n_brightness_bins, by_field=by_field)
    if file_split is None:
        labels = stratified_split(frame[schema.REDSHIFT].to_numpy(), fractions, seed, n_bins, strata)
    else:
        labels = file_split_labels(frame[schema.REDSHIFT].to_numpy(), file_split, fractions, seed, n_bins, strata)
    return {name: frame[labels == name].reset_index(drop=True) for name in schema.SPLITS}
