"""A workspace copied or moved elsewhere reads and writes its own MLflow store, not the original's.

MLflow records absolute artifact locations: the experiment's, every run's, every model version's and
logged model's. In a copied workspace they still name the original folder, so `predict` would read the
original's models and a new run would write into the original's artifacts (and fail once it is gone).
When the sqlite store lives in the workspace and its artifacts were copied along, `relocate_store`
rewrites those locations to this workspace, once, in one transaction (MLflow has no command for it:
`mlflow gc` and the server's `--artifacts-destination` do not move recorded locations). Anything else
(artifacts left behind, a store outside the workspace) is one line saying what to do.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from galaxyprop.errors import GalaxypropError

#: The columns of MLflow's sqlite schema that hold absolute artifact locations (a `file://` URI or a path).
PATH_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                ("model_versions", "storage_location"), ("logged_models", "artifact_location"))


def _path(location: str) -> PurePosixPath:
    return PurePosixPath(unquote(urlparse(location).path) if location.startswith("file:") else location)


def moved_prefixes(recorded: str, current: str) -> tuple[str, str] | None:
    """(old, new) folder prefixes when `recorded` and `current` (artifact roots: `file://` URIs or paths)
    name the same relative folder under different parents; None when they are the same place."""
    old, new = _path(recorded).parts, _path(current).parts
    if old == new:
        return None
    common = 0
    while common < min(len(old), len(new)) - 1 and old[-1 - common] == new[-1 - common]:
        common += 1
    old_base, new_base = PurePosixPath(*old[:len(old) - common]), PurePosixPath(*new[:len(new) - common])
    return str(old_base).rstrip("/"), str(new_base).rstrip("/")


def relocate_store(database: Path, old: str, new: str) -> int:
    """Rewrite every recorded artifact location under folder `old` to lie under `new` (as a path or a
    `file://` URI); the number of locations rewritten."""
    changed = 0
    with sqlite3.connect(database) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, column in PATH_COLUMNS:
            if table not in tables:
                continue
            for prefix_old, prefix_new in ((f"file://{old}/", f"file://{new}/"), (f"{old}/", f"{new}/")):
                cursor = db.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE substr({column}, 1, ?) = ?",
                    (prefix_new, len(prefix_old) + 1, len(prefix_old), prefix_old))
                changed += cursor.rowcount
    return changed


def check_location(tracking_uri: str, artifact_root: str | None, experiment: str,
                   recorded_location: str) -> str | None:
    """Make a copied or moved workspace's store its own: when the experiment's `recorded_location`
    lies outside this workspace's `artifact_root`, rewrite the store (a sqlite file in the workspace
    whose artifacts came along) and say so in one line (returned); raise with what to do otherwise."""
    if artifact_root is None or not artifact_root.startswith("file:") or not tracking_uri.startswith("sqlite:///"):
        return None
    expected = f"{artifact_root.rstrip('/')}/{experiment}"
    if _path(recorded_location) == _path(expected):
        return None
    moved = moved_prefixes(recorded_location, expected)
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    here = Path(_path(expected))
    if moved is None or database.is_absolute() or not here.is_dir():
        raise GalaxypropError(
            f"the MLflow store {tracking_uri} keeps experiment '{experiment}' artifacts at {recorded_location}, "
            f"not at this workspace's {expected}: copy the workspace with its mlruns/ folder (then galaxyprop "
            "points the store here itself), or set stores.artifact_location (GALAXYPROP_ARTIFACT_LOCATION) to "
            "where they are")
    n = relocate_store(database, *moved)
    return (f"this workspace's MLflow store was made in {moved[0]}: its {n} recorded artifact locations now "
            f"point into {moved[1]}")
