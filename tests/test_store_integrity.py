"""A damaged SQLite store is one line naming it and the backup to restore, before anything reads or writes
it; the registry is backed up before it changes, the newest few kept."""

from __future__ import annotations

import sqlite3

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from galaxyprop.config import Stores
from galaxyprop.errors import GalaxypropError
from galaxyprop.tracking import integrity
from galaxyprop.tracking import runs as tracking


def a_store(folder) -> Stores:
    """A real MLflow SQLite store with one registered model (its tables and indexes span many pages)."""
    stores = Stores(f"sqlite:///{folder}/mlflow.db", str(folder / "artifacts"), f"sqlite:///{folder}/optuna.db",
                    "galaxyprop-test")
    tracking.connect(stores)
    client = MlflowClient()
    client.create_registered_model("galaxyprop-z")
    for i in range(30):
        client.set_registered_model_tag("galaxyprop-z", f"history.{i:06d}", "x" * 200)
    mlflow.set_tracking_uri("file:///dev/null")        # let go of the file before it is damaged
    return stores


@pytest.mark.parametrize("damage", ["page overwritten", "random bytes", "truncated"])
def test_a_damaged_store_is_one_line_naming_the_file_and_the_backup(tmp_path, damage):
    stores = a_store(tmp_path)
    copy = integrity.backup_store(stores.tracking_uri)
    path = tmp_path / "mlflow.db"
    data = bytearray(path.read_bytes())
    page = 4096
    if damage == "page overwritten":
        data[2 * page:3 * page] = bytes(range(256)) * 16
    elif damage == "random bytes":
        data[:] = bytes((i * 7919) % 251 for i in range(page))
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    damaged = path.read_bytes()
    with pytest.raises(GalaxypropError) as raised:
        tracking.connect(stores)
    message = str(raised.value)
    assert message.startswith(f"{path}: the store is damaged (") and "\n" not in message
    assert message.endswith(f"nothing was written to it: restore the newest backup (`cp {copy} {path}`)")
    with pytest.raises(GalaxypropError, match="the store is damaged"):
        integrity.backup_store(stores.tracking_uri)             # a damaged store is not backed up over the good ones
    assert path.read_bytes() == damaged and integrity.backups(path) == [copy]
    copy.replace(path)                                          # the remedy it names works
    integrity.check_store(stores.tracking_uri)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM registered_model_tags").fetchone() == (30,)


def test_backups_are_consistent_copies_and_the_newest_five_are_kept(tmp_path):
    stores = a_store(tmp_path)
    made = [integrity.backup_store(stores.tracking_uri) for _ in range(7)]
    kept = integrity.backups(tmp_path / "mlflow.db")
    assert kept == made[::-1][:5] and not any(p.name.endswith(".partial") for p in (tmp_path / "backups").iterdir())
    with sqlite3.connect(kept[0]) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM registered_model_tags").fetchone() == (30,)
    assert integrity.backup_store("postgresql://u@h/mlflow") is None          # a server's store is the server's
    assert integrity.backup_store(f"sqlite:///{tmp_path}/absent.db") is None
