"""A stage's independent jobs (e.g. one head on each of its feature sources) as child processes, as many at
once as its thread plan has cores: the parallelism a 2-core machine otherwise leaves unused where each fit
runs on one thread (torch and BLAS under `resources.threads: auto`, for reproducible bytes).

Each job always runs in a fresh process of its own, one lane or several, so its outputs cannot depend on
how many ran beside it or in which order (a job run after another in one process could inherit its random
state or its loaded pools): a busy machine (one lane) and an idle one (two) write the same files. Each
child is handed its share of the plan through `PLAN_ENV` instead of sampling a machine its siblings are
already busy on. DVC has no parallel stages; Optuna's own parallel workers (`tuning.workers`) share one
study and draw their trials in the order they finish, so they are not this: there the stage runs one lane.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence

from galaxyprop.errors import GalaxypropError
from galaxyprop.resources import PLAN_ENV, ThreadPlan

#: Seconds between polls of the running children.
POLL_S = 0.2


def lane_count(plan: ThreadPlan, jobs: int) -> int:
    """How many jobs run at once: one per core the plan gives OpenMP (the idle cores under `auto`)."""
    return max(1, min(int(jobs), plan.openmp))


def share(plan: ThreadPlan, lanes: int) -> ThreadPlan:
    """Each of `lanes` children's share of `plan` (at least one thread per pool)."""
    return ThreadPlan(*(max(1, n // lanes) for n in (plan.openmp, plan.blas, plan.torch)))


def run_in_lanes(jobs: Sequence[tuple[str, list[str]]], plan: ThreadPlan) -> None:
    """Run every (label, argv) job as its own process, `lane_count(plan, len(jobs))` at a time, each with
    its `share` of `plan`; their output goes where this process's goes. The first job that fails stops the
    others (SIGTERM) and raises one line naming it; its own message is above."""
    lanes = lane_count(plan, len(jobs))
    child = share(plan, lanes)
    env = {**os.environ, PLAN_ENV: f"{child.openmp},{child.blas},{child.torch}"}
    waiting, running = list(jobs), []
    try:
        while waiting or running:
            while waiting and len(running) < lanes:
                label, argv = waiting.pop(0)
                running.append((label, subprocess.Popen(argv, env=env)))
            time.sleep(POLL_S)
            for label, process in list(running):
                code = process.poll()
                if code is None:
                    continue
                running.remove((label, process))
                if code != 0:
                    raise GalaxypropError(f"{label} failed (exit {code}); its message is above")
    finally:
        for _, process in running:
            process.terminate()
        for _, process in running:
            process.wait()
