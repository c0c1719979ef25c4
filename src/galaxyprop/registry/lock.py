"""An exclusive lock on the MLflow store for one registered model, held while `production` moves.

How the lock is keyed depends on the store behind the registry URI:

- `sqlite:///path/to/mlflow.db`: an advisory file lock next to the database,
  `path/to/mlflow.db.<model>.lock` (`fcntl.flock`); every process that opens that database
  file, on any machine that sees the same file system with working `flock`, serialises on it.
- `postgresql://...` (any `postgresql+driver://`): a PostgreSQL session advisory lock,
  `pg_advisory_lock(key)` on the same database, `key` a signed 64-bit integer derived from the
  registered model's name (`advisory_key`); every client of that database serialises on it.
- anything else (`http(s)://` tracking servers, `file:` stores, plain paths, databricks...): a file
  lock in a per-user lock directory (`$XDG_CACHE_HOME/galaxyprop/locks`, default
  `~/.cache/galaxyprop/locks`) named by a hash of the URI and the model name. **This serialises the
  moves made by one user on one machine only**: two machines (or users) promoting through the same
  tracking server are not serialised by it.

A lock not obtained within `timeout` seconds raises a one-line `GalaxypropError`; the default is
`DEFAULT_TIMEOUT_S`, overridable by the environment variable `GALAXYPROP_LOCK_TIMEOUT` (seconds).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from galaxyprop.errors import GalaxypropError

DEFAULT_TIMEOUT_S = 600.0
POLL_S = 0.05
TIMEOUT_ENV = "GALAXYPROP_LOCK_TIMEOUT"


def default_timeout() -> float:
    value = os.environ.get(TIMEOUT_ENV)
    if value is None:
        return DEFAULT_TIMEOUT_S
    try:
        return float(value)
    except ValueError:
        raise GalaxypropError(f"{TIMEOUT_ENV}={value!r}: expected a number of seconds") from None


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory-lock key (signed 64-bit) of a registered model: stable across
    processes, machines and Python versions (sha256, not `hash()`)."""
    digest = hashlib.sha256(f"galaxyprop-registry:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (None for an in-memory database)."""
    rest = uri.split("?", 1)[0].removeprefix("sqlite://")
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        return None
    return Path(rest[1:])      # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db


def user_lock_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "galaxyprop" / "locks"


def lock_file(uri: str, name: str) -> Path | None:
    """The lock file for `name` in the store at `uri`, or None where the store locks itself (PostgreSQL)."""
    if is_postgres(uri):
        return None
    if uri.startswith("sqlite:"):
        db = sqlite_path(uri)
        if db is not None:
            return db.with_name(f"{db.name}.{_safe(name)}.lock")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return user_lock_dir() / f"{digest}.{_safe(name)}.lock"


def is_postgres(uri: str) -> bool:
    return uri.split("://", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _busy(name: str, where: str, timeout: float) -> GalaxypropError:
    return GalaxypropError(f"another promotion of {name} is in progress (lock {where} held for > {timeout:g} s); "
                           f"wait for it and retry, or raise {TIMEOUT_ENV}")


@contextmanager
def _file_lock(path: Path, name: str, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:             # not POSIX: the filelock package does the same with the OS's lock
        from filelock import FileLock, Timeout

        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise _busy(name, str(path), timeout) from None
        try:
            yield
        finally:
            lock.release()
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy(name, str(path), timeout) from None
                time.sleep(POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)     # the lock file stays: removing it would race with a process about to lock it


@contextmanager
def _postgres_lock(uri: str, name: str, timeout: float) -> Iterator[None]:
    import sqlalchemy

    key = advisory_key(name)
    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:     # a session lock: held by this connection until unlocked
            deadline = time.monotonic() + timeout
            while not connection.execute(sqlalchemy.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
                connection.rollback()
                if time.monotonic() >= deadline:
                    raise _busy(name, f"pg_advisory_lock({key})", timeout)
                time.sleep(POLL_S * 4)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
    finally:
        engine.dispose()


@contextmanager
def store_lock(uri: str, name: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock of registered model `name` in the store at `uri` for a block (see the module)."""
    timeout = default_timeout() if timeout is None else float(timeout)
    if is_postgres(uri):
        with _postgres_lock(uri, name, timeout):
            yield
        return
    with _file_lock(lock_file(uri, name), name, timeout):
        yield
