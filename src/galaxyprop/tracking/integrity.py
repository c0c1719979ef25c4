"""The local SQLite stores (MLflow's runs and registry, Optuna's studies) checked before they are used, and
the registry's backed up before it is changed, so that a damaged file is never written to and the
registry's history can always be restored.

A store that SQLite cannot open, or whose `PRAGMA quick_check` finds damage (a page overwritten, a
truncated file), is one line naming the file and the newest backup to restore. `register`, `promote`
and `rollback` first copy the store with SQLite's online backup API (consistent while others read it)
into `<store folder>/backups/`, keeping the newest `KEEP`. Written here because neither MLflow nor
Optuna checks or backs up its SQLite file; a server store (PostgreSQL) is the server's to back up.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from galaxyprop.errors import GalaxypropError

BACKUPS = "backups"
KEEP = 5
PREFIX = "sqlite:///"


def sqlite_file(uri: str) -> Path | None:
    """The file of a `sqlite:///` store URI (None for any other store)."""
    return Path(uri.removeprefix(PREFIX)) if uri.startswith(PREFIX) else None


def backups(path: Path) -> list[Path]:
    """The backups of store file `path`, newest first."""
    return sorted((path.parent / BACKUPS).glob(f"{path.stem}-*{path.suffix}"), reverse=True)


def check_store(uri: str) -> None:
    """One line naming the file, and the newest backup to restore, if the SQLite store at `uri` is damaged;
    nothing for a store that does not exist yet or is not SQLite."""
    path = sqlite_file(uri)
    if path is None or not path.exists():
        return
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            found = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.DatabaseError as err:
        found = [str(err)]
    if found != ["ok"]:
        found = [" ".join(found[0].replace("*** in database main ***", "").split())]
        saved = backups(path)
        remedy = (f"restore the newest backup (`cp {saved[0]} {path}`)" if saved else
                  "no backup of it exists (galaxyprop makes one before each registration or promotion)")
        raise GalaxypropError(f"{path}: the store is damaged ({found[0]}); nothing was written to it: {remedy}")


def backup_store(uri: str, keep: int = KEEP) -> Path | None:
    """Check the SQLite store at `uri` and copy it into `backups/` beside it (SQLite's online backup),
    keeping the newest `keep`; return the copy (None for a store that is not a SQLite file yet)."""
    path = sqlite_file(uri)
    if path is None or not path.exists():
        return None
    check_store(uri)
    folder = path.parent / BACKUPS
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    copy = folder / f"{path.stem}-{stamp}{path.suffix}"
    partial = copy.with_name(copy.name + ".partial")
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as source, closing(sqlite3.connect(partial)) as dest:
        source.backup(dest)
    partial.rename(copy)
    for old in backups(path)[keep:]:
        old.unlink()
    return copy
