"""The stores stay consistent when processes race or die: concurrent moves of `production` serialise
on the store's lock, and stage runs left RUNNING by a killed process are ended FAILED by the next run
of the stage."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from galaxyprop.config import Stores
from galaxyprop.errors import GalaxypropError
from galaxyprop.registry import lock as store_lock
from galaxyprop.registry import versions as registry
from galaxyprop.registry.promotion import Gate
from galaxyprop.tracking import runs as tracking

pytestmark = pytest.mark.slow   # simulation, servers or concurrency: left out of `make test-fast`

NAME = "galaxyprop-z"
EVALUATION = {"all": {"mse": 0.1}}


@pytest.fixture
def versions(store, tmp_path):
    """A registered `galaxyprop-z` with three versions (registry entries only: moving aliases needs no model)."""
    client = MlflowClient()
    client.create_registered_model(NAME)
    source = tmp_path / "artifacts" / "model"
    source.mkdir(parents=True)
    found = [str(client.create_model_version(NAME, source.as_uri()).version) for _ in range(3)]
    assert found == ["1", "2", "3"]
    return found


PROMOTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import mlflow
    from galaxyprop.registry import versions as registry
    from galaxyprop.registry.promotion import Gate

    uri, version, ready, go, delay = sys.argv[1:6]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)

    def evaluate(model_uri):
        time.sleep(float(delay))      # an evaluation takes a while: the window the race needs
        return {"all": {"mse": 0.1}}

    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.002)
    print(registry.promote("z", version, evaluate, Gate("mse"), force=True, reason=f"race to v{version}").message)
""")


def race(store: Stores, tmp_path: Path, targets: list[str], delay: float = 0.5) -> list[str]:
    """Forced promotions of `targets`, one per process, started at the same instant; their messages."""
    go = tmp_path / "go"
    go.unlink(missing_ok=True)
    procs, ready = [], []
    for i, version in enumerate(targets):
        ready.append(tmp_path / f"ready-{i}")
        ready[-1].unlink(missing_ok=True)
        procs.append(subprocess.Popen([sys.executable, "-c", PROMOTER, store.tracking_uri, version, str(ready[-1]),
                                       str(go), str(delay)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready):      # every process imported and waits at the line
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.01)
    go.touch()
    messages = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        messages.append(out.strip())
    return messages


def test_concurrent_forced_promotions_serialise(store, versions, tmp_path):
    messages = race(store, tmp_path, ["1", "2"])
    assert all(m.startswith("promoted galaxyprop-z version") for m in messages), messages
    moves = registry.history("z")
    # one entry per move, the second on top of the first: it read production under the lock
    assert len(moves) == 2 and sorted(m.version for m in moves) == ["1", "2"]
    first, second = moves
    assert (first.action, first.previous) == ("force", None)
    assert (second.action, second.previous) == ("force", first.version)
    tags = MlflowClient().get_registered_model(NAME).tags
    assert sorted(k for k in tags if k.startswith("history.")) == ["history.000000", "history.000001"]
    assert str(registry.alias_version("z", "production").version) == second.version
    assert MlflowClient().get_model_version(NAME, second.version).tags["previous_production"] == first.version
    rolled = registry.rollback("z", "after the race")
    assert rolled.message == f"rolled galaxyprop-z production back from version {second.version} to {first.version}"
    assert str(registry.alias_version("z", "production").version) == first.version


def test_concurrent_promotions_of_one_version_move_it_once(store, versions, tmp_path):
    messages = race(store, tmp_path, ["2", "2"])
    assert sorted(m.split(" (")[0] for m in messages) == [
        "galaxyprop-z version 2 is already production", "promoted galaxyprop-z version 2 to production"]
    assert [(m.action, m.version, m.previous) for m in registry.history("z")] == [("force", "2", None)]


def test_a_held_lock_times_out_with_one_clear_line(store, versions, tmp_path):
    with registry.production_lock("z"):
        with pytest.raises(GalaxypropError) as err:
            registry.promote("z", "1", lambda uri: EVALUATION, Gate("mse"), force=True, reason="x", lock_timeout=0.2)
        with pytest.raises(GalaxypropError, match="another promotion of galaxyprop-z is in progress"):
            registry.rollback("z", "x", lock_timeout=0.2)
    lock = tmp_path / "mlflow.db.galaxyprop-z.lock"
    assert str(err.value).startswith(f"another promotion of galaxyprop-z is in progress (lock {lock} held for > 0.2 s)")
    assert registry.history("z") == []
    assert registry.promote("z", "1", lambda uri: EVALUATION, Gate("mse"), force=True, reason="x").promoted


def test_history_indices_continue_after_the_largest(store, versions):
    client = MlflowClient()
    stray = {"action": "promote", "version": "1", "previous": None, "at": "2026-01-01T00:00:00+00:00", "by": "someone",
             "why": "an entry at index 5"}
    client.set_registered_model_tag(NAME, "history.000005", json.dumps(stray))
    client.set_registered_model_alias(NAME, "production", "1")
    registry.promote("z", "2", lambda uri: EVALUATION, Gate("mse"), force=True, reason="next")
    tags = client.get_registered_model(NAME).tags
    assert sorted(k for k in tags if k.startswith("history.")) == ["history.000005", "history.000006"]
    assert [(m.version, m.previous) for m in registry.history("z")] == [("1", None), ("2", "1")]


def test_the_lock_is_keyed_by_the_kind_of_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert store_lock.lock_file("sqlite:////data/x/mlflow.db", NAME) == Path("/data/x/mlflow.db.galaxyprop-z.lock")
    assert store_lock.lock_file("sqlite:///mlruns/mlflow.db?timeout=5", NAME) == Path("mlruns/mlflow.db.galaxyprop-z.lock")
    assert store_lock.lock_file("postgresql://u@db:5432/mlflow", NAME) is None
    assert store_lock.lock_file("postgresql+psycopg2://u@db/mlflow", NAME) is None
    http = store_lock.lock_file("http://mlflow.example:5000", NAME)
    assert http.parent == tmp_path / "cache" / "galaxyprop" / "locks" and http.name.endswith(".galaxyprop-z.lock")
    assert http != store_lock.lock_file("http://other:5000", NAME)
    assert store_lock.lock_file("sqlite:///:memory:", NAME).parent == http.parent
    # the advisory-lock key: signed 64-bit, stable (not Python's salted hash), one per model
    key = store_lock.advisory_key(NAME)
    assert -2**63 <= key < 2**63 and key == store_lock.advisory_key(NAME) != store_lock.advisory_key("galaxyprop-kcorr_r01")
    assert key == int.from_bytes(hashlib.sha256(b"galaxyprop-registry:galaxyprop-z").digest()[:8],
                                 "big", signed=True)
    monkeypatch.setenv("GALAXYPROP_LOCK_TIMEOUT", "soon")
    with pytest.raises(GalaxypropError, match="GALAXYPROP_LOCK_TIMEOUT='soon': expected a number of seconds"):
        store_lock.default_timeout()


STAGE = textwrap.dedent("""
    import sys, time
    from galaxyprop.tracking import runs as tracking
    from galaxyprop.config import Stores

    with tracking.stage_run(Stores(*sys.argv[1:5]), "train:knn") as run:
        with tracking.child_run("train:knn:trial-0") as child:
            print(run.info.run_id, child.info.run_id, flush=True)
            time.sleep(600)
""")


def test_runs_left_running_by_a_killed_stage_are_ended_failed_by_the_next(store):
    proc = subprocess.Popen([sys.executable, "-c", STAGE, store.tracking_uri, store.artifact_location,
                             store.optuna_storage, store.experiment], stdout=subprocess.PIPE, text=True)
    try:
        killed, killed_child = proc.stdout.readline().split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    client = MlflowClient()
    assert client.get_run(killed).info.status == client.get_run(killed_child).info.status == "RUNNING"
    tags = client.get_run(killed).data.tags
    assert (tags["stage"], tags[tracking.HOST_TAG], tags[tracking.PID_TAG]) == ("train", socket.gethostname(),
                                                                                str(proc.pid))
    experiment = mlflow.get_experiment_by_name(store.experiment).experiment_id
    host, dead = socket.gethostname(), str(proc.pid)

    def running(stage: str, **tags) -> str:
        return client.create_run(experiment, tags={"stage": stage, **tags}).info.run_id

    other_stage = running("evaluate", **{tracking.HOST_TAG: host, tracking.PID_TAG: dead})
    live = running("train", **{tracking.HOST_TAG: host, tracking.PID_TAG: str(os.getpid())})
    other_host = running("train", **{tracking.HOST_TAG: "elsewhere", tracking.PID_TAG: dead})
    day_ago = int((time.time() - 25 * 3600) * 1000)
    legacy_old = client.create_run(experiment, tags={"stage": "train"}, start_time=day_ago).info.run_id
    legacy_new = client.create_run(experiment, tags={"stage": "train"}).info.run_id

    with tracking.stage_run(store, "train:mlp") as run:
        new = run.info.run_id
    status = {r: client.get_run(r).info.status for r in (killed, killed_child, legacy_old, new, other_stage, live,
                                                          other_host, legacy_new)}
    # another stage's run whose process is gone too (a stage killed, then restored from DVC's run cache)
    assert status == {killed: "FAILED", killed_child: "FAILED", legacy_old: "FAILED", new: "FINISHED",
                      other_stage: "FAILED", live: "RUNNING", other_host: "RUNNING", legacy_new: "RUNNING"}
    note = client.get_run(killed).data.tags[tracking.ENDED_BY_TAG]
    assert note == f"run {new} of stage train: its process {dead} on {host} is gone"
    assert client.get_run(killed_child).data.tags[tracking.ENDED_BY_TAG] == note
    assert "no pid tag and started 25 h ago" in client.get_run(legacy_old).data.tags[tracking.ENDED_BY_TAG]
    assert client.get_run(new).data.tags[tracking.PID_TAG] == str(os.getpid())


def test_an_unreachable_tracking_server_is_one_line_naming_it():
    """Nothing listens on the port: the first command says so and what to do, instead of MLflow's minutes of
    retries ending in a traceback; the process's MLflow URI is left as it was."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    before = mlflow.get_tracking_uri()
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(GalaxypropError, match=rf"^tracking server {uri} does not answer \(.*Connection refused.*\): "
                                              r"start it \(`galaxyprop server ...`\) or point MLFLOW_TRACKING_URI"):
        tracking.connect(Stores(uri, None, "sqlite:///unused.db", "galaxyprop-test"))
    assert mlflow.get_tracking_uri() == before
