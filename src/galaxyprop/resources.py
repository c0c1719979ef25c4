"""Threads, set on purpose: how many each process uses, from the params knob `resources.threads`.

The knob is `auto` or a positive integer up to this machine's usable cores. `resolve_threads` turns it
into the count each of a stage's processes gets (its tuning workers split it); `limit_threads` sets that
count on every pool a fit may use: OpenMP (scikit-learn's boosting, torch's and faiss's own copies of
libgomp), OpenBLAS/MKL (through threadpoolctl, for the libraries already loaded, and the environment, for
the ones loaded later and for child processes), torch's intra-op pool and faiss's.

Why it matters: an OpenMP parallel region ends on a barrier at which the waiting threads spin. With as
many threads as cores and one other busy process on the machine, one of the threads is always waiting
for a core that the other process holds, and its siblings spin until the scheduler gives it back: a
2-thread fit on 2 cores ran ~6x slower beside one busy process than alone, while the same fit on 1
thread lost only its parallel share. So `auto` counts the cores that are idle now, not the cores there are.

What `auto` gives each pool (`thread_plan`): the OpenMP pools already loaded (scikit-learn's boosting,
whose results do not depend on its thread count) the idle cores; BLAS and torch one thread, because
their results do (a BLAS product with a long inner dimension, and a CNN's weights after one epoch, differ
in the last digit between 1 and 2 threads: a count that followed the machine's load would make two
fresh clones write different files), and because two torch threads beside one busy process ran an MLP
fit 12x slower than alone. An integer gives every pool that many threads: the user's decision, the same
on every run. faiss's exact searches run on one thread whatever the plan (`one_thread`).

Library code: never reads params.yaml; the stage passes the knob's value in.
"""

from __future__ import annotations

import numbers
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from galaxyprop.errors import GalaxypropError
from galaxyprop.validation.rules import Schema, located

#: The environment variables the thread pools read when they load (in this process or a child).
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: How long `idle_cores` watches the machine, in seconds.
SAMPLE_S = 0.2
#: A core counts as idle when at least this fraction of it was (summed over the cores we may use).
IDLE_FRACTION = 0.8

# The global limit `limit_threads` set, kept alive so that it persists (threadpoolctl's limiter object),
# and its plan.
_limiter = None
_plan: ThreadPlan | None = None


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or `taskset` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                  # not Linux
        return os.cpu_count() or 1


def check_threads(value) -> None:
    """Refuse, in one line, a `resources.threads` that is neither 'auto' nor an integer from 1 to the cores."""
    n = cores()
    ok = value == "auto" if isinstance(value, str) else (
        isinstance(value, numbers.Integral) and not isinstance(value, bool) and 1 <= value <= n)
    if not ok:
        raise GalaxypropError(f"resources.threads must be 'auto' or an integer from 1 to {n} (this machine's "
                              f"cores), got {value!r}")


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(idle, total) clock ticks since boot over `cpus`, from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat") as stat:
            lines = [line.split() for line in stat if line.startswith("cpu")]
    except OSError:
        return None
    per_cpu = {int(f[0][3:]): f for f in lines if f[0] != "cpu"}
    rows = [per_cpu[c] for c in cpus if c in per_cpu] or [f for f in lines if f[0] == "cpu"]
    idle = total = 0.0
    for fields in rows:
        ticks = [float(x) for x in fields[1:9]]   # user nice system idle iowait irq softirq steal (guest is in user)
        idle += ticks[3] + ticks[4]
        total += sum(ticks)
    return (idle, total) if rows else None


def idle_cores(sample_s: float = SAMPLE_S) -> int:
    """How many of our cores other processes leave idle now: /proc/stat watched for `sample_s` (this
    process's own CPU time in that window counts as idle: it is ours to give), else the 1-minute load
    average. A core counts when IDLE_FRACTION of it is idle, so a neighbour using a fifth of a core
    already takes it."""
    n = cores()
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        cpus = set(range(n))
    before, own_before, start = _cpu_times(cpus), _own_seconds(), time.monotonic()
    if before is not None:
        time.sleep(sample_s)
        after, own_after, wall = _cpu_times(cpus), _own_seconds(), time.monotonic() - start
        if after is not None and after[1] > before[1]:
            idle_share = (after[0] - before[0]) / (after[1] - before[1])      # of all our cores' time
            free = idle_share * n + (own_after - own_before) / max(wall, 1e-9)
            return max(0, min(n, int(free + 1 - IDLE_FRACTION)))
    try:
        return max(0, min(n, int(n - os.getloadavg()[0] + 1 - IDLE_FRACTION)))
    except OSError:
        return n


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def resolve_threads(value, workers: int = 1) -> int:
    """The threads each of `workers` processes gets from `resources.threads` = `value`.

    An integer is split among the workers: max(1, n // workers). `auto` is a decision made now, not the
    core count: the cores other processes leave idle (`idle_cores`), split among the workers, at least 1
    and at most cores // workers. A busy machine therefore gets fewer threads, because OpenMP threads
    spin-wait on each other at every barrier: a 2-thread fit on 2 cores beside one busy process ran ~6x
    slower than alone, a 1-thread fit barely slower than its share (module docstring).
    """
    check_threads(value)
    workers = max(1, int(workers))
    if value == "auto":
        return max(1, min(idle_cores(), cores()) // workers)
    return max(1, int(value) // workers)


@dataclass(frozen=True)
class ThreadPlan:
    """Threads per pool: `openmp` for the OpenMP pools already loaded (scikit-learn's boosting), `blas` for
    OpenBLAS/MKL, `torch` for torch's intra-op pool (and, through OMP_NUM_THREADS, for any OpenMP library
    loaded later and for child processes)."""

    openmp: int
    blas: int
    torch: int

    @classmethod
    def of(cls, plan: ThreadPlan | int) -> ThreadPlan:
        return plan if isinstance(plan, ThreadPlan) else cls(int(plan), int(plan), int(plan))


def thread_plan(value, workers: int = 1) -> ThreadPlan:
    """Each of `workers` processes' threads from `resources.threads` = `value` (module docstring): an
    integer for every pool; `auto` the idle cores for OpenMP, one thread for BLAS and torch."""
    n = resolve_threads(value, workers)
    return ThreadPlan(n, 1, 1) if value == "auto" else ThreadPlan(n, n, n)


def _set_env(plan: ThreadPlan | None, saved: dict[str, str | None] | None = None) -> dict[str, str | None]:
    """Set (or with `saved`, restore) the thread variables; returns what they were."""
    before = {name: os.environ.get(name) for name in THREAD_ENV}
    wanted = {} if plan is None else {"OMP_NUM_THREADS": plan.torch, "OPENBLAS_NUM_THREADS": plan.blas,
                                       "MKL_NUM_THREADS": plan.blas}
    for name in THREAD_ENV:
        value = str(wanted[name]) if saved is None else saved[name]
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return before


def _set_libraries(plan: ThreadPlan) -> tuple[int | None, int | None]:
    """Torch's and faiss's own setters, for those already imported; returns their counts before.
    (A later import reads OMP_NUM_THREADS: torch when its pool first starts, faiss's libgomp when it loads.)"""
    torch, faiss = sys.modules.get("torch"), sys.modules.get("faiss")
    before = (torch.get_num_threads() if torch is not None else None,
              faiss.omp_get_max_threads() if faiss is not None else None)
    if faiss is not None:
        faiss.omp_set_num_threads(plan.openmp)
    if torch is not None:
        torch.set_num_threads(plan.torch)
    return before


def _check_plan(plan: ThreadPlan | int) -> ThreadPlan:
    counts = [plan.openmp, plan.blas, plan.torch] if isinstance(plan, ThreadPlan) else [plan]
    if any(not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1 for n in counts):
        raise ValueError(f"limit_threads needs positive integers, got {plan!r}")
    return ThreadPlan.of(plan)


def limit_threads(plan: ThreadPlan | int) -> None:
    """From now on, the plan's threads (an integer: that many for every pool) for this process and its
    children (module docstring)."""
    global _limiter, _plan
    from threadpoolctl import threadpool_limits

    plan = _check_plan(plan)
    _set_env(plan)
    _limiter = threadpool_limits(limits={"openmp": plan.openmp, "blas": plan.blas})
    _set_libraries(plan)      # after threadpoolctl: torch's libgomp gets torch's count
    _plan = plan


def process_plan() -> ThreadPlan | None:
    """The plan `limit_threads` last set for this process (None: it never ran)."""
    return _plan


@contextmanager
def thread_limit(plan: ThreadPlan | int | None) -> Iterator[None]:
    """`limit_threads(plan)` for the block, then everything back as it was (None: leave the threads alone)."""
    if plan is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    plan = _check_plan(plan)
    with ExitStack() as stack:
        saved_env = _set_env(plan)
        stack.callback(_set_env, None, saved_env)
        stack.enter_context(threadpool_limits(limits={"openmp": plan.openmp, "blas": plan.blas}))
        torch_before, faiss_before = _set_libraries(plan)
        if torch_before is not None:
            stack.callback(sys.modules["torch"].set_num_threads, torch_before)
        if faiss_before is not None:
            stack.callback(sys.modules["faiss"].omp_set_num_threads, faiss_before)
        yield


_one_thread = threading.local()


@contextmanager
def one_thread() -> Iterator[None]:
    """One BLAS / OpenMP / torch thread for the block (also a decorator: `@one_thread()`), so that its
    results do not depend on how many threads the run has: a BLAS or OpenMP product splits its sums among
    its threads, and another split adds in another order (the last digit of a long (n, p) @ (p, m)
    product, or of faiss's exact L2 search on wide features, differs between 1 and 2 threads; an iterated
    fit carries it into every stored number). Every count is put back afterwards; a nested block does
    nothing more (no second library scan). Within one machine and library build, results are then
    byte-identical run to run."""
    if getattr(_one_thread, "active", False):
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    _one_thread.active = True
    try:
        with threadpool_limits(limits=1):
            if torch_before is not None and torch_before != 1:
                torch.set_num_threads(1)
            yield
    finally:
        if torch_before is not None and torch_before != 1:
            torch.set_num_threads(torch_before)
        _one_thread.active = False


def _check_resources(resources, params) -> None:
    try:
        check_threads(resources.get("threads", "auto"))
    except GalaxypropError as err:
        raise located(str(err)) from None


#: params `resources`: the threads every stage and tuning worker uses
RESOURCES_SCHEMA = Schema(closed={"resources": {"threads"}}, checks={"resources": _check_resources})
