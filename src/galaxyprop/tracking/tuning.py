"""Optuna tuning of a head on the validation split: seeded, stored, resumable, and run by one or
several worker processes on one study (Optuna's distributed pattern).

The search space comes from params: a list is a categorical choice, a mapping with `low` and
`high` (and optional `log`) an int or float range, anything else a fixed value.

Workers (`tuning.workers`): the stage's process is worker 0 and forks the others; each opens the
study in the RDB storage itself and runs trials until the study holds `n_trials` finished ones. A
worker's trials beat a heartbeat; a trial whose worker died (its heartbeat older than the grace
period) is failed by the next worker that looks and retried by it with the same parameters
(Optuna's heartbeat-stale callback, formerly `RetryFailedTrialCallback`), so a killed worker loses
nothing. The workers of one stage take trials under one lock, so that they never start more than
`n_trials` between them. Each trial records its worker in the user attribute `worker`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext

import optuna
from optuna.storages._heartbeat import get_heartbeat_thread  # Optuna's own heartbeat (optuna is pinned)

from galaxyprop.errors import GalaxypropError
from galaxyprop.resources import ThreadPlan, cores, thread_limit
from galaxyprop.tracking import WORKER_ATTR
from galaxyprop.validation.rules import Schema

Objective = Callable[[dict, optuna.Trial], tuple[float, dict[str, float]]]
TrialContext = Callable[[optuna.Trial, dict], AbstractContextManager]
#: Trials that count towards `n_trials`: finished, whether they ran to the end or were pruned.
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
#: (heartbeat interval, grace period) in seconds: a RUNNING trial silent for longer is its worker's death.
HEARTBEAT = (30, 90)
#: How often a worker with nothing to take looks again (a retried trial may appear).
POLL_S = 1.0
log = logging.getLogger(__name__)


def check_workers(workers: int, *storages: str) -> None:
    """Refuse parallel workers on a sqlite store, in one line: sqlite lets one process write at a time."""
    if workers <= 1:
        return
    for uri in storages:
        if uri.startswith("sqlite:"):
            raise GalaxypropError(
                f"tuning.workers: {workers} workers need stores on a database server, but {uri} is sqlite, which "
                f"lets one process write at a time (the workers would queue on its lock or fail with 'database is "
                f"locked'); set OPTUNA_STORAGE and MLFLOW_TRACKING_URI to the team store (galaxyprop server, docs/stores.md "
                f"'Team mode') or tuning.workers: 1")


def make_pruner(config: Mapping | None) -> optuna.pruners.BasePruner:
    """`{kind: median|hyperband|none, ...}` from params; the rest are the pruner's arguments."""
    config = dict(config or {"kind": "none"})
    kind = config.pop("kind", "none")
    pruners = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
               "none": optuna.pruners.NopPruner}
    if kind not in pruners:
        raise GalaxypropError(f"tuning.pruner.kind must be one of {sorted(pruners)}, got '{kind}'")
    try:
        return pruners[kind](**config)
    except TypeError as err:
        raise GalaxypropError(f"tuning.pruner: bad arguments for '{kind}' ({err})") from None


def pruning_callback(trial: optuna.Trial, monitor: str = "val_loss"):
    """Optuna's Lightning callback: reports `monitor` each epoch and stops a trial the pruner rejects."""
    from optuna_integration import PyTorchLightningPruningCallback

    return PyTorchLightningPruningCallback(trial, monitor=monitor)


def suggest(trial: optuna.Trial, space: Mapping) -> dict:
    """Draw one set of hyperparameters from `space`."""
    params = {}
    for name, spec in space.items():
        if isinstance(spec, (list, tuple)):
            params[name] = trial.suggest_categorical(name, list(spec))
        elif isinstance(spec, Mapping):
            if not {"low", "high"} <= set(spec):
                raise GalaxypropError(f"search space '{name}' needs 'low' and 'high', got {dict(spec)}")
            low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
            if isinstance(low, int) and isinstance(high, int):
                params[name] = trial.suggest_int(name, low, high, log=log)
            else:
                params[name] = trial.suggest_float(name, float(low), float(high), log=log)
        else:
            params[name] = spec
    return params


def hyperparameters(fixed: Mapping, trial: optuna.trial.FrozenTrial) -> dict:
    """All hyperparameters of a finished trial: the head's fixed settings and the trial's drawn values."""
    return {**fixed, **trial.params}


def create_storage(storage: str) -> None:
    """Create the RDB `storage`'s tables and stamp its schema version now, in one process: processes that
    open a new storage at once race to stamp it (sqlite: "UNIQUE constraint failed: alembic_version")."""
    optuna.storages.RDBStorage(storage).engine.dispose()


def open_study(storage: str, study_name: str, *, seed: int, pruner: optuna.pruners.BasePruner | None = None,
               heartbeat: tuple[int, int] = HEARTBEAT, parallel: bool = False) -> optuna.Study:
    """The study `study_name` in the RDB `storage` (created if new), with heartbeats and stale trials
    retried; `parallel`: TPE's constant liar, so that workers do not all draw near the same point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = optuna.storages.RDBStorage(
            storage, heartbeat_interval=heartbeat[0], grace_period=heartbeat[1],
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2))
        sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)
        return optuna.create_study(study_name=study_name, storage=rdb, load_if_exists=True, direction="minimize",
                                   sampler=sampler, pruner=pruner or optuna.pruners.NopPruner())


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _count(study: optuna.Study) -> tuple[int, int, int]:
    """Finished, running and waiting (queued retries) trials."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return (sum(s in FINISHED for s in states), states.count(optuna.trial.TrialState.RUNNING),
            states.count(optuna.trial.TrialState.WAITING))


def _next_trial(study: optuna.Study, n_trials: int, lock) -> tuple[optuna.Trial | None, bool]:
    """(a trial to run or None, whether the study is done). A queued retry is always taken; a new
    trial only while finished + running < n_trials, so the workers never overshoot."""
    with lock:
        _fail_stale(study)
        finished, running, waiting = _count(study)
        if finished >= n_trials:
            return None, True
        if waiting or finished + running < n_trials:
            with warnings.catch_warnings():     # "heartbeat ... used with Study.optimize": _run_one beats it
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                return study.ask(), False
        return None, False


def _run_one(study: optuna.Study, trial: optuna.Trial, func: Callable[[optuna.Trial], float], worker: str) -> None:
    """Run `func` on `trial` under Optuna's heartbeat and tell the study how it ended (as `optimize` does)."""
    trial.set_user_attr(WORKER_ATTR, worker)
    state, value, error = None, None, None
    with get_heartbeat_thread(trial._trial_id, study._storage):
        try:
            value = func(trial)
        except optuna.TrialPruned:
            state = optuna.trial.TrialState.PRUNED
        except BaseException as err:
            state, error = optuna.trial.TrialState.FAIL, err
    study.tell(trial, value if state is None else None, state=state)
    if error is not None:
        raise error


def _work(study: optuna.Study, func, n_trials: int, lock, worker: str, check=lambda: None, progress=None) -> None:
    """One worker's loop: take trials until the study holds n_trials finished ones."""
    while True:
        check()
        trial, done = _next_trial(study, n_trials, lock)
        if done:
            return
        if trial is None:                 # the others hold the last trials: wait, one of them may die
            time.sleep(POLL_S)
            continue
        _run_one(study, trial, func, worker)
        if progress is not None:
            progress.n = min(n_trials, _count(study)[0])
            progress.refresh()


def worker_name(index: int) -> str:
    return f"{socket.gethostname()}:{os.getpid()}/{index}"


def _thread_share(workers: int, threads: ThreadPlan | int | None = None) -> AbstractContextManager:
    """Each of `workers` processes' thread limit (OpenMP/BLAS pools, torch's and faiss's): `threads`, the
    per-worker count the stage resolved from `resources.threads` (galaxyprop.resources); None: with several
    workers, each gets its share of the cores, with one the threads are left alone."""
    if threads is None and workers > 1:
        threads = max(1, cores() // workers)
    return thread_limit(threads)


def _forget_connections() -> None:
    """In a forked worker: drop the database connections inherited from the parent (SQLAlchemy's fork
    recipe), so that the two processes never talk over one socket; the worker opens its own."""
    for module in ("mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store"):
        store = sys.modules.get(module)
        for engine in list(getattr(getattr(store, "SqlAlchemyStore", None), "_engine_map", {}).values()):
            engine.dispose(close=False)


def _child(index: int, func, n_trials: int, lock, storage: str, study_name: str, seed: int, pruner,
           heartbeat: tuple[int, int], workers: int, threads: ThreadPlan | int | None) -> None:
    try:
        _forget_connections()
        with _thread_share(workers, threads):
            study = open_study(storage, study_name, seed=seed + index, pruner=pruner, heartbeat=heartbeat,
                               parallel=True)
            _work(study, func, n_trials, lock, worker_name(index))
    except BaseException as err:
        print(f"tuning worker {index} ({study_name}): {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        sys.exit(1)


def tune(objective: Objective, space: Mapping, *, n_trials: int, study_name: str, storage: str,
         seed: int, pruner: optuna.pruners.BasePruner | None = None,
         trial_context: TrialContext | None = None, workers: int = 1,
         heartbeat: tuple[int, int] = HEARTBEAT, threads: ThreadPlan | int | None = None) -> optuna.Study:
    """Minimise `objective(params, trial)` over `space` until the study holds `n_trials` finished
    (complete or pruned) trials; each runs inside `trial_context(trial, params)` when given.

    The study lives in `storage` under `study_name`; a killed run resumes where it stopped, and trials
    left RUNNING by it are failed by the heartbeat and retried. `workers` > 1: this process and
    `workers - 1` forked ones share the study (module docstring); a worker that dies of a signal is
    recovered from, one whose objective raised stops the tuning with its error. `threads`: each
    worker's threads (`galaxyprop.resources.thread_plan(resources.threads, workers)`); None:
    the cores split among several workers, a single one left alone.
    """
    check_workers(workers, storage)
    optuna.logging.set_verbosity(logging.WARNING)
    study = open_study(storage, study_name, seed=seed, pruner=pruner, heartbeat=heartbeat, parallel=workers > 1)
    _fail_stale(study)

    def run_trial(trial: optuna.Trial) -> float:
        params = suggest(trial, space)
        with trial_context(trial, params) if trial_context else nullcontext():
            value, metrics = objective(params, trial)
        for name, metric in metrics.items():
            trial.set_user_attr(name, metric)
        return value

    from tqdm.auto import tqdm

    finished = _count(study)[0]
    if finished < n_trials:
        context = multiprocessing.get_context("fork")
        lock = context.Lock() if workers > 1 else nullcontext()
        children = [context.Process(target=_child, name=f"tuning-worker-{i}", daemon=True,
                                    args=(i, run_trial, n_trials, lock, storage, study_name, seed, pruner,
                                          heartbeat, workers, threads))
                    for i in range(1, workers)]
        lost: set[str] = set()

        def check() -> None:
            for child in children:
                if child.exitcode is not None and child.exitcode > 0:
                    raise GalaxypropError(f"{child.name} of study '{study_name}' failed (exit {child.exitcode}; "
                                          f"its error is in the log above)")
                if child.exitcode is not None and child.exitcode < 0 and child.name not in lost:
                    lost.add(child.name)
                    log.warning("%s died of signal %d: its trial is retried by the others after the %d s grace "
                                "period", child.name, -child.exitcode, heartbeat[1])

        with _thread_share(workers, threads), tqdm(total=n_trials, initial=finished, desc=f"trials ({workers} workers)"
                                          if workers > 1 else "trials", file=sys.stderr) as progress:
            for child in children:
                child.start()
            try:
                _work(study, run_trial, n_trials, lock, worker_name(0), check, progress)
                for child in children:
                    child.join()
                check()
                progress.n = min(n_trials, _count(study)[0])
                progress.refresh()
            finally:
                for child in children:          # after an error here: stop the others (they hold no lock now)
                    if child.is_alive():
                        child.terminate()
                        child.join()
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise GalaxypropError(f"study '{study_name}' has no complete trial")
    return study


def _check_tuning(tuning: Mapping, params: Mapping) -> None:
    from galaxyprop.config import Stores
    from galaxyprop.validation.rules import reuse

    reuse("tuning.pruner", lambda: make_pruner(tuning.get("pruner")))
    if tuning.get("workers", 1) > 1 and "stores" in params:     # the stores as the stages see them (env first)
        stores = Stores.from_params(params)
        reuse("tuning.workers", lambda: check_workers(tuning["workers"], stores.optuna_storage, stores.tracking_uri))


#: params `tuning`: the pruner and the worker processes of each study
TUNING_SCHEMA = Schema(rules={"tuning.seed": "int", "tuning.pruner": "map?", "tuning.pruner.kind": "str",
                       "tuning.workers": "count"},
                checks={"tuning": _check_tuning})
