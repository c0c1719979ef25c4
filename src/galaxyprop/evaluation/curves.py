"""The data behind the curves the PNG plots draw, as CSV files DVC plots and compares across commits.

Every curve file has the same three columns, long format: `series` (a head, a head and survey field,
or a split), `x` and `y`; its folder says what x and y are (`reports/curves/coverage/z.csv`), and dvc.yaml
titles the axes of each folder's plots. `dvc plots show` / `dvc plots diff HEAD~1` draw them with the
`series` template in .dvc/plots/, on a page that loads vega from .dvc/plots/offline.html (no network).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.data.io import atomic_path

COLUMNS = ("series", "x", "y")


def write_curve(rows: Iterable[tuple[str, float, float]], path: Path) -> None:
    """Write (series, x, y) rows as CSV, atomically, with floats at full precision."""
    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g", lineterminator="\n")


def loss_curve(history: list[dict]) -> list[tuple[str, float, float]]:
    """Per-epoch losses: series `train` and `val`, x the epoch."""
    return [(split, float(row["epoch"]), float(row[f"{split}_loss"]))
            for split in ("train", "val") for row in history if f"{split}_loss" in row]


def metric_vs_redshift(by_bin: Mapping[str, list[dict]], metric: str) -> list[tuple[str, float, float]]:
    """One head per series, x the centre of each redshift bin (from `evaluate`'s breakdown rows)."""
    return [(head, 0.5 * (row["z_low"] + row["z_high"]), float(row[metric]))
            for head, rows in by_bin.items() for row in rows if metric in row]


def pit_histogram(pits: Mapping[str, np.ndarray], n_bins: int = 20) -> list[tuple[str, float, float]]:
    """Each head's PIT histogram as a density on [0, 1] (flat at 1 when calibrated); x the bin centre."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    out = []
    for head, pit in pits.items():
        counts, _ = np.histogram(np.clip(pit, 0, 1), bins=edges)
        density = counts / max(len(pit), 1) * n_bins
        out += [(head, float(c), float(d)) for c, d in zip(0.5 * (edges[1:] + edges[:-1]), density, strict=True)]
    return out


def coverage(calibration: Mapping[str, dict], nominal: Mapping[str, float],
             split: str = "test") -> list[tuple[str, float, float]]:
    """Reliability of the calibrated intervals: x the nominal level of each interval (`nominal`:
    `coverage_68` -> 0.683, ...), y the fraction of truths inside, one series per head and survey field;
    the `nominal` series is the diagonal."""
    out = [("nominal", p, p) for p in sorted(nominal.values())]
    for head, splits in calibration.items():
        for field, summary in splits[split]["calibrated"].items():
            out += [(f"{head} {field}", nominal[key], float(summary[key])) for key in sorted(nominal, key=nominal.get)]
    return out
