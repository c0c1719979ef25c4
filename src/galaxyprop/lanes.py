"""A stage's independent jobs (e.g. one head on each of its feature sources) in forked processes, as many at
once as its thread plan has cores: the parallelism a 2-core machine otherwise leaves unused where each fit
runs on one thread (torch and BLAS under `resources.threads: auto`, for reproducible bytes).

Each job always runs in a process of its own, forked from the stage once its imports are done and before it
has fitted anything, one lane or several: so its outputs cannot depend on how many ran beside it or in which
order (a job run after another in one process could inherit its random state or its loaded pools), and a
busy machine (one lane) and an idle one (two) write the same files. Forking, not a fresh interpreter, saves
each job the ~4 s of imports. The stage must not have opened a store connection or run a parallel region
before (the children would share them). DVC has no parallel stages; Optuna's own parallel workers
(`tuning.workers`) share one study and draw their trials in the order they finish, so they are not this:
there the stage runs one lane.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from galaxyprop.errors import EXIT_INPUT_ERROR, GalaxypropError
from galaxyprop.resources import ThreadPlan, limit_threads


def lane_count(plan: ThreadPlan, jobs: int) -> int:
    """How many jobs run at once: one per core the plan gives OpenMP (the idle cores under `auto`)."""
    return max(1, min(int(jobs), plan.openmp))


def share(plan: ThreadPlan, lanes: int) -> ThreadPlan:
    """Each of `lanes` children's share of `plan` (at least one thread per pool)."""
    return ThreadPlan(*(max(1, n // lanes) for n in (plan.openmp, plan.blas, plan.torch)))


def run_in_lanes(jobs: Sequence[tuple[str, Callable[[], object]]], plan: ThreadPlan) -> None:
    """Run every (label, job) in a forked process of its own, `lane_count(plan, len(jobs))` at a time, each
    on its `share` of `plan`; their output goes where this process's goes. The first job that fails stops
    the others (SIGTERM) and raises one line naming it; its own message is above."""
    lanes = lane_count(plan, len(jobs))
    child_plan = share(plan, lanes)
    waiting, running = list(jobs), {}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        while waiting or running:
            while waiting and len(running) < lanes:
                label, job = waiting.pop(0)
                pid = os.fork()
                if pid == 0:
                    _run_child(job, child_plan)      # never returns
                running[pid] = label
            pid, status = os.wait()
            label = running.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            if label is not None and code != 0:
                raise GalaxypropError(f"{label} failed (exit {code}); its message is above")
    finally:
        for pid in running:
            os.kill(pid, signal.SIGTERM)
        for pid in running:
            os.waitpid(pid, 0)


def _run_child(job: Callable[[], object], plan: ThreadPlan) -> None:
    """In the forked child: the job on `plan`'s threads, then exit (a GalaxypropError as the CLI's one line
    and its exit code) without running the parent's cleanup."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        limit_threads(plan)
        job()
        code = 0
    except GalaxypropError as err:
        print(f"galaxyprop: error: {err}", file=sys.stderr)
        code = EXIT_INPUT_ERROR
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:       # a child reports everything, then exits
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
