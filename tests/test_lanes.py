"""A stage's jobs in parallel lanes (galaxyprop.lanes): one forked process per job, one lane per core of
the plan, each child on its share of the threads, a failure stopping the rest."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from galaxyprop.errors import GalaxypropError
from galaxyprop.lanes import lane_count, run_in_lanes, share
from galaxyprop.resources import ThreadPlan


def test_one_lane_per_core_of_the_plan_each_with_its_share():
    assert lane_count(ThreadPlan(2, 1, 1), 5) == 2
    assert lane_count(ThreadPlan(2, 1, 1), 1) == 1
    assert lane_count(ThreadPlan(1, 1, 1), 4) == 1
    assert lane_count(ThreadPlan(8, 8, 8), 3) == 3
    assert share(ThreadPlan(2, 1, 1), 2) == ThreadPlan(1, 1, 1)
    assert share(ThreadPlan(8, 8, 8), 3) == ThreadPlan(2, 2, 2)
    assert share(ThreadPlan(16, 1, 1), 2) == ThreadPlan(8, 1, 1)


def _job(path: Path, seconds: float):
    """A job that records when it ran, in which process and on which threads, holding its lane a while."""
    def job() -> None:
        from threadpoolctl import threadpool_info

        start = time.monotonic()
        time.sleep(seconds)
        openmp = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "openmp"]
        path.write_text(json.dumps({"start": start, "end": time.monotonic(), "pid": os.getpid(),
                                    "openmp": openmp, "omp_env": os.environ.get("OMP_NUM_THREADS")}))
    return job


def _run(tmp_path: Path, n: int, seconds: float, plan: ThreadPlan) -> list[dict]:
    run_in_lanes([(f"job {i}", _job(tmp_path / f"{i}.json", seconds)) for i in range(n)], plan)
    return [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(n)]


def _overlaps(records: list[dict]) -> int:
    """How many pairs of jobs ran at the same time."""
    return sum(a["start"] < b["end"] and b["start"] < a["end"] for i, a in enumerate(records) for b in records[i + 1:])


def test_two_lanes_run_two_jobs_at_a_time_each_in_its_own_process(tmp_path):
    import numpy  # noqa: F401  (an OpenMP/BLAS pool for the plan to reach)

    records = _run(tmp_path, 4, 0.5, ThreadPlan(2, 1, 1))
    assert len({r["pid"] for r in records}) == 4 and os.getpid() not in {r["pid"] for r in records}
    assert {r["omp_env"] for r in records} == {"1"}                     # each on its share: one thread
    assert all(set(r["openmp"]) <= {1} for r in records)
    assert 1 <= _overlaps(records) <= 3          # 0 and 1 together; each next one when a lane frees
    starts, ends = sorted(r["start"] for r in records), sorted(r["end"] for r in records)
    assert starts[2] >= ends[0] - 0.05          # the third waited for a free lane: never three at once


def test_one_lane_runs_the_jobs_one_after_another(tmp_path):
    records = _run(tmp_path, 3, 0.2, ThreadPlan(1, 1, 1))
    assert _overlaps(records) == 0 and len({r["pid"] for r in records}) == 3


def test_a_failed_job_stops_its_siblings_and_is_named(tmp_path, capfd):
    sibling = tmp_path / "sibling.pid"

    def slow() -> None:
        sibling.write_text(str(os.getpid()))
        time.sleep(60)

    def broken() -> None:
        while not sibling.exists():
            time.sleep(0.05)
        raise GalaxypropError("targets.z.column: 'Q' is not a column of the source")

    with pytest.raises(GalaxypropError, match=r"^the broken one failed \(exit 2\); its message is above$"):
        run_in_lanes([("the slow one", slow), ("the broken one", broken)], ThreadPlan(2, 1, 1))
    assert "galaxyprop: error: targets.z.column: 'Q' is not a column of the source" in capfd.readouterr().err
    with pytest.raises(ProcessLookupError):   # terminated and reaped, not left running for its 60 s
        os.kill(int(sibling.read_text()), 0)


def test_an_unexpected_failure_is_reported_with_its_traceback(tmp_path, capfd):
    def crash() -> None:
        raise ValueError("boom")

    with pytest.raises(GalaxypropError, match=r"^crash failed \(exit 1\)"):
        run_in_lanes([("crash", crash)], ThreadPlan(1, 1, 1))
    assert "ValueError: boom" in capfd.readouterr().err


def test_lanes_share_an_optuna_storage_created_before_them(tmp_path):
    """Two lanes opening studies in one new sqlite storage: created first by `create_storage` (as a train
    stage does), neither races the other to stamp its schema, and both studies are kept."""
    import optuna

    from galaxyprop.tracking.tuning import create_storage, open_study

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"

    def study(name: str):
        def job() -> None:
            open_study(storage, name, seed=0).optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
        return job

    run_in_lanes([("creating the storage", lambda: create_storage(storage))], ThreadPlan(1, 1, 1))
    run_in_lanes([("a", study("a")), ("b", study("b"))], ThreadPlan(2, 1, 1))
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    assert summaries == {"a": 3, "b": 3}
