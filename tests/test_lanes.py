"""A stage's jobs in parallel lanes (galaxyprop.lanes): one per core of the plan, each child told its share,
a failure stopping the rest; and the plan a lane inherits (galaxyprop.resources.inherited_plan)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from galaxyprop.errors import GalaxypropError
from galaxyprop.lanes import lane_count, run_in_lanes, share
from galaxyprop.resources import PLAN_ENV, ThreadPlan, inherited_plan

#: A job that records when it ran, its pid and the plan it was given, holding its lane for a while.
JOB = """
import json, os, sys, time
start = time.monotonic()
time.sleep(float(sys.argv[2]))
with open(sys.argv[1], "w") as out:
    json.dump({"start": start, "end": time.monotonic(), "plan": os.environ.get("GALAXYPROP_THREAD_PLAN")}, out)
"""


def test_one_lane_per_core_of_the_plan_each_with_its_share():
    assert lane_count(ThreadPlan(2, 1, 1), 5) == 2
    assert lane_count(ThreadPlan(2, 1, 1), 1) == 1
    assert lane_count(ThreadPlan(1, 1, 1), 4) == 1
    assert lane_count(ThreadPlan(8, 8, 8), 3) == 3
    assert share(ThreadPlan(2, 1, 1), 2) == ThreadPlan(1, 1, 1)
    assert share(ThreadPlan(8, 8, 8), 3) == ThreadPlan(2, 2, 2)
    assert share(ThreadPlan(16, 1, 1), 2) == ThreadPlan(8, 1, 1)


def _jobs(tmp_path: Path, n: int, seconds: float) -> list[tuple[str, list[str]]]:
    return [(f"job {i}", [sys.executable, "-c", JOB, str(tmp_path / f"{i}.json"), str(seconds)]) for i in range(n)]


def _records(tmp_path: Path, n: int) -> list[dict]:
    return [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(n)]


def _overlaps(records: list[dict]) -> int:
    """How many pairs of jobs ran at the same time."""
    return sum(a["start"] < b["end"] and b["start"] < a["end"]
               for i, a in enumerate(records) for b in records[i + 1:])


def test_two_lanes_run_two_jobs_at_a_time_and_hand_each_its_plan(tmp_path):
    run_in_lanes(_jobs(tmp_path, 4, 1.0), ThreadPlan(2, 1, 1))
    records = _records(tmp_path, 4)
    assert {r["plan"] for r in records} == {"1,1,1"}
    # lanes of 2: jobs 0 and 1 together, then 2 and 3 (each new one starts when one ends)
    assert 1 <= _overlaps(records) <= 3
    starts = sorted(r["start"] for r in records)
    ends = sorted(r["end"] for r in records)
    assert starts[2] >= ends[0] - 0.05       # the third job waited for a free lane


def test_one_lane_runs_the_jobs_one_after_another(tmp_path):
    run_in_lanes(_jobs(tmp_path, 3, 0.3), ThreadPlan(1, 1, 1))
    records = _records(tmp_path, 3)
    assert _overlaps(records) == 0
    assert {r["plan"] for r in records} == {"1,1,1"}


def test_a_failed_job_stops_its_siblings_and_is_named(tmp_path):
    sibling = tmp_path / "sibling.pid"
    jobs = [("the slow one", [sys.executable, "-c",
                              f"import os, time; open({str(sibling)!r}, 'w').write(str(os.getpid())); time.sleep(60)"]),
            ("the broken one", [sys.executable, "-c", "import time, sys; time.sleep(0.5); sys.exit(3)"])]
    with pytest.raises(GalaxypropError, match=r"^the broken one failed \(exit 3\); its message is above$"):
        run_in_lanes(jobs, ThreadPlan(2, 1, 1))
    pid = int(sibling.read_text())
    with pytest.raises(ProcessLookupError):   # terminated and reaped, not left running for its 60 s
        os.kill(pid, 0)


@pytest.mark.parametrize("text, message", [("2,1", "expected three thread counts"),
                                           ("a,b,c", "expected three thread counts"),
                                           ("0,1,1", "at least 1")])
def test_a_bad_inherited_plan_is_one_line(monkeypatch, text, message):
    monkeypatch.setenv(PLAN_ENV, text)
    with pytest.raises(GalaxypropError, match=message):
        inherited_plan()


def test_the_inherited_plan_is_read_back(monkeypatch):
    monkeypatch.delenv(PLAN_ENV, raising=False)
    assert inherited_plan() is None
    monkeypatch.setenv(PLAN_ENV, "3,1,2")
    assert inherited_plan() == ThreadPlan(3, 1, 2)
