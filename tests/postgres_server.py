"""A throw-away PostgreSQL server and an MLflow tracking server on it, for the team-store tests and
the tuning benchmark: the machine's installed PostgreSQL (`pg_config --bindir`), a new cluster made
by `initdb` in a temporary folder, on 127.0.0.1 and a free port; stopped by the PIDs it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bindir() -> Path:
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(found) / "initdb").exists():
            return Path(found)
    except (OSError, subprocess.CalledProcessError):
        pass
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError("PostgreSQL's initdb was not found (pg_config --bindir, /usr/lib/postgresql/*/bin): "
                       "install the postgresql package")


def _as_owner() -> dict:
    """Run the server as `postgres` when we are root (initdb and postgres refuse to run as root)."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


@contextmanager
def postgres_server(databases: tuple[str, ...] = ("mlflow", "optuna")) -> Iterator[str]:
    """Yield `postgresql://postgres@127.0.0.1:<port>` with `databases` created; trust auth on loopback."""
    import psycopg

    bindir, owner = _bindir(), _as_owner()
    folder = Path(tempfile.mkdtemp(prefix="galaxyprop-pg-"))   # not under pytest's root-only tmp: postgres must enter
    data = folder / "data"
    if owner:
        shutil.chown(folder, "postgres", "postgres")
    subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True, **owner)
    port = free_port()
    server = subprocess.Popen([str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
                               "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True, **owner)
    base = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = psycopg.connect(f"{base}/postgres", connect_timeout=2, autocommit=True)
                break
            except psycopg.OperationalError:
                if server.poll() is not None:
                    raise RuntimeError(f"postgres exited: {server.stderr.read().decode()[-2000:]}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("postgres did not accept connections within 60 s") from None
                time.sleep(0.2)
        with connection.cursor() as cursor:
            for name in databases:
                cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()
        yield base
    finally:
        server.send_signal(signal.SIGINT)        # "fast" shutdown of the postmaster we started
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def mlflow_server(backend: str, artifacts: Path, cwd: Path | None = None, options: tuple[str, ...] = (),
                  env: dict | None = None) -> Iterator[str]:
    """`galaxyprop server` on `backend` with served artifacts in `artifacts` (and `options`, `env`); yield its
    URL once /health answers; stop its process group by the PID at the end."""
    port = free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below, after the server
    server = subprocess.Popen(["galaxyprop", "server", "--backend-store-uri", backend, "--artifacts-destination",
                               str(artifacts), "--port", str(port), "--workers", "2", *options],
                              cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"galaxyprop server did not come up:\n{log.read().decode()[-3000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
