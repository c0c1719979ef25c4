"""Threads set on purpose (galaxyprop.resources): the knob's check, its split among workers, and that the
limit reaches the loaded OpenMP/BLAS libraries and torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from galaxyprop import resources
from galaxyprop.errors import GalaxypropError
from galaxyprop.resources import THREAD_ENV, check_threads, limit_threads, resolve_threads, thread_limit

CORES = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", [0, -1, 1.5, 2.0, "two", "2", True, False, None, CORES + 1])
def test_check_threads_refuses_in_one_line(value):
    with pytest.raises(GalaxypropError) as err:
        check_threads(value)
    message = str(err.value)
    assert message.startswith("resources.threads ") and "\n" not in message
    assert repr(value) in message and f"from 1 to {CORES}" in message


@pytest.mark.parametrize("value", ["auto", 1, CORES])
def test_check_threads_accepts(value):
    check_threads(value)


def test_resolve_threads_splits_among_workers():
    assert resolve_threads(1) == 1
    assert resolve_threads(CORES) == CORES
    assert resolve_threads(CORES, workers=CORES) == 1
    assert resolve_threads(1, workers=4) == 1                  # never below one
    with pytest.raises(GalaxypropError, match="^resources.threads "):
        resolve_threads(0)


def test_auto_takes_the_idle_cores_split_among_workers(monkeypatch):
    monkeypatch.setattr(resources, "cores", lambda: 8)
    for idle, workers, expected in [(8, 1, 8), (8, 2, 4), (3, 1, 3), (3, 2, 1), (0, 1, 1), (0, 4, 1), (8, 16, 1)]:
        monkeypatch.setattr(resources, "idle_cores", lambda idle=idle: idle)
        assert resolve_threads("auto", workers) == expected, (idle, workers)


def test_idle_cores_is_within_the_machine():
    assert 0 <= resources.idle_cores(0.05) <= CORES
    assert 1 <= resolve_threads("auto") <= CORES


@pytest.fixture()
def restored(monkeypatch):
    """Everything limit_threads touches, put back afterwards: the pools, torch's threads, the environment."""
    import torch
    from threadpoolctl import threadpool_limits

    for name in THREAD_ENV:                      # monkeypatch restores them as they were
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    with threadpool_limits(limits=None):          # restores every pool's count on exit
        yield
        monkeypatch.setattr(resources, "_limiter", None)
    torch.set_num_threads(threads)


def _pools() -> list[tuple[str, int]]:
    from threadpoolctl import threadpool_info

    return [(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()]


def test_limit_threads_reaches_openmp_blas_and_torch(restored):
    import numpy as np
    import torch
    from sklearn.ensemble import HistGradientBoostingRegressor

    HistGradientBoostingRegressor(max_iter=2).fit(np.random.default_rng(0).normal(size=(50, 2)), np.arange(50.0))
    limit_threads(1)
    pools = _pools()
    assert {api for api, _ in pools} >= {"openmp"}, pools
    assert all(n == 1 for _, n in pools), pools
    assert torch.get_num_threads() == 1
    assert all(os.environ[name] == "1" for name in THREAD_ENV)


def test_thread_limit_is_undone_after_the_block(restored):
    import torch

    limit_threads(CORES)
    before = (_pools(), torch.get_num_threads(), {name: os.environ.get(name) for name in THREAD_ENV})
    with thread_limit(1):
        assert all(n == 1 for _, n in _pools()) and torch.get_num_threads() == 1
    assert (_pools(), torch.get_num_threads(), {name: os.environ.get(name) for name in THREAD_ENV}) == before
    with thread_limit(None):                      # None: left alone
        assert torch.get_num_threads() == before[1]


def test_tune_runs_its_trials_on_the_threads_it_is_given(restored, tmp_path):
    import torch

    from galaxyprop.tracking.tuning import tune

    limit_threads(CORES)
    seen = []

    def objective(params, trial):
        seen.append((torch.get_num_threads(), {n for _, n in _pools()}, os.environ["OMP_NUM_THREADS"]))
        return (params["x"] - 1.0) ** 2, {}

    tune(objective, {"x": {"low": -5.0, "high": 5.0}}, n_trials=2, study_name="s",
         storage=f"sqlite:///{tmp_path}/optuna.db", seed=0, threads=1)
    assert seen == [(1, {1}, "1")] * 2
    assert torch.get_num_threads() == CORES and {n for _, n in _pools()} == {CORES}     # undone after the study


def test_auto_gives_openmp_the_idle_cores_and_blas_and_torch_one_thread(monkeypatch, restored):
    """The pools whose results depend on their thread count (BLAS, torch) get one thread under `auto`, so
    that a fresh clone's outputs do not follow the machine's load; an integer is the same for every pool."""
    import subprocess
    import sys

    import galaxyprop.resources as resources

    monkeypatch.setattr(resources, "idle_cores", lambda *a, **k: CORES)
    assert resources.thread_plan("auto") == resources.ThreadPlan(CORES, 1, 1)
    assert resources.thread_plan(1) == resources.ThreadPlan(1, 1, 1)
    assert resources.thread_plan(CORES, workers=CORES) == resources.ThreadPlan(1, 1, 1)
    code = ("import sys; sys.path.insert(0, 'src'); from galaxyprop.resources import ThreadPlan, limit_threads; "
            f"limit_threads(ThreadPlan({CORES}, 1, 1)); import torch; print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "1"          # torch imported after the plan: one thread, from the environment


def test_idle_cores_counts_what_the_neighbours_leave(monkeypatch):
    """/proc/stat ticks over the sample window -> idle cores: a core counts when 80 % of it is idle, so a
    neighbour using a quarter of a core takes it and one using a tenth does not; without /proc/stat, the
    load average."""
    monkeypatch.setattr(resources, "cores", lambda: 2)
    monkeypatch.setattr(resources.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(resources.time, "sleep", lambda s: None)
    monkeypatch.setattr(resources, "_own_seconds", lambda: 0.0)
    for idle_ticks, expected in [(200.0, 2), (190.0, 2), (175.0, 1), (100.0, 1), (10.0, 0)]:
        ticks = iter([(0.0, 0.0), (idle_ticks, 200.0)])
        monkeypatch.setattr(resources, "_cpu_times", lambda cpus, ticks=ticks: next(ticks))
        assert resources.idle_cores() == expected, idle_ticks
    monkeypatch.setattr(resources, "_cpu_times", lambda cpus: None)
    monkeypatch.setattr(resources.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert resources.idle_cores() == 1
