"""Each feature head's fit alone and beside one busy process, with `resources.threads: auto` and with the
threads fixed at the machine's cores, -> bench.json "threads".

What it shows: OpenMP threads spin-wait on each other at every barrier, so a fit with as many threads as
cores slows down many times when one other process holds a core; `auto` (galaxyprop.resources.thread_plan,
as a stage sets it) gives OpenMP the cores idle when it decides, BLAS and torch one thread, and keeps the
fit near its speed alone. `threads` in each run is the plan per pool.

The work timed is one tuning trial's: fit on 4,000 of the 10,000 real SDSS galaxies that ship with
kcorrect (ugriz model magnitudes and colours and the Petrosian r magnitude, 10 columns; the target their
spectroscopic redshift), with the validation rows for the heads that early-stop on them, then predict the
1,000 validation rows (for knn the prediction is the work: its fit only stores the rows); each timing is
the median of several trials (MIN_RUNS, MIN_S, MAX_S). Each head is fitted once, untimed, before, so that
imports and first-use costs are not timed. On a shared machine each measurement first waits (up to
QUIET_WAIT_S) for the other work to stop, and records whether it did (`quiet_before`) and the idle cores
it saw once its own busy process ran (`idle_cores_seen`). The busy process is
`python -c "while True: pass"`, stopped by its PID after the fit.

Run alone: `python benchmarks/threads.py` prints the JSON (about 2-3 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]

GRID = {"low": 0.0, "high": 0.5, "n_bins": 100}
#: small settings, so that the whole section stays within a few minutes
HEADS = {
    "gbt": dict(max_iter=100, min_samples_leaf=20, seed=0),
    "knn": dict(k=32),
    "mlp": dict(hidden_layers=2, width=64, batch_size=128, max_epochs=8, patience=8, n_mc=20, seed=0),
    "clap": dict(grid=GRID, latent_dim=8, projection_width=32, k_min=8, k_max=128, n_calibration=100,
                 refit_width=32, max_epochs=4, patience=4, n_realisations=1, seed=0),
}
#: each timing is the median of at least MIN_RUNS trials lasting MIN_S together; fewer where they reach MAX_S
MIN_RUNS, MIN_S, MAX_S = 3, 1.0, 8.0
#: how long a measurement waits for the machine's other work to stop (recorded as `quiet`)
QUIET_WAIT_S = 30.0
#: the heads that take the validation rows in `fit` (to early-stop)
USES_VALIDATION = {"mlp", "clap"}


def sdss_features(n_train: int = 4000, n_val: int = 1000) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(X, z) of a training and a validation draw from kcorrect's SDSS test galaxies with positive fluxes."""
    import kcorrect
    from astropy.io import fits

    path = Path(os.path.dirname(kcorrect.__file__)) / "data" / "test" / "gst_tests_small.fits"
    with fits.open(path) as hdul:
        data = hdul[1].data
        model, petro = np.asarray(data["MODELFLUX"], float), np.asarray(data["PETROFLUX"], float)
        z = np.asarray(data["Z"], float)
    good = (model > 0).all(axis=1) & (petro[:, 2] > 0) & (z > 0) & (z < GRID["high"])
    mags = 22.5 - 2.5 * np.log10(model[good])
    X = np.column_stack([mags, -np.diff(mags, axis=1), 22.5 - 2.5 * np.log10(petro[good, 2])]).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    train, val = order[:n_train], order[n_train:n_train + n_val]
    return (X[train], z[good][train]), (X[val], z[good][val])


def trial(name: str, train, val) -> float:
    """Seconds for one trial's work: fit, then predict the validation rows."""
    from galaxyprop.heads import make_head

    head = make_head(name, **HEADS[name])
    start = time.perf_counter()
    head.fit(*train, **({"validation": val} if name in USES_VALIDATION else {}))
    head.predict(val[0])
    return time.perf_counter() - start


def busy_process() -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)                                     # running flat out before anyone looks
    return process


def wait_until_quiet(timeout_s: float = QUIET_WAIT_S) -> bool:
    """Wait (up to `timeout_s`) until every core is idle, so that "alone" means alone on a shared machine;
    whether it was."""
    from galaxyprop.resources import cores, idle_cores

    deadline = time.monotonic() + timeout_s
    while idle_cores(0.5) < cores():
        if time.monotonic() > deadline:
            return False
    return True


def stop(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGTERM)
    process.wait()


def measure(name: str, threads: str | int, train, val, busy: bool) -> dict:
    """One timed trial of head `name` with `threads` ('auto': resolved now, with the busy process running)."""
    from dataclasses import asdict

    from galaxyprop.resources import idle_cores, limit_threads, thread_plan

    quiet = wait_until_quiet()
    process = busy_process() if busy else None
    try:
        idle = idle_cores()
        plan = thread_plan(threads)                     # what a stage sets (pipelines/stage.py)
        limit_threads(plan)
        seconds = []
        while len(seconds) < MIN_RUNS and sum(seconds) < MAX_S or sum(seconds) < MIN_S:
            seconds.append(trial(name, train, val))
    finally:
        if process is not None:
            stop(process)
    return {"seconds": round(float(np.median(seconds)), 3), "runs": len(seconds), "threads": asdict(plan),
            "idle_cores_seen": idle, "quiet": quiet}


def threads_benchmark() -> dict:
    from galaxyprop.resources import cores, limit_threads

    train, val = sdss_features()
    n_cores = cores()
    limit_threads(1)
    for name in HEADS:                                   # warm-up: imports, first-use costs
        trial(name, (train[0][:500], train[1][:500]), (val[0][:200], val[1][:200]))
    result = {"data": f"kcorrect's SDSS galaxies: {len(train[1])} train, {len(val[1])} validation rows x "
                      f"{train[0].shape[1]} columns, target z", "cores": n_cores,
              "work": "fit + predict the validation rows (one tuning trial)", "heads": HEADS, "runs": {}}
    for mode, threads in (("auto", "auto"), ("fixed_at_cores", n_cores)):
        for name in HEADS:
            alone = measure(name, threads, train, val, busy=False)
            beside = measure(name, threads, train, val, busy=True)
            result["runs"].setdefault(mode, {})[name] = {
                "alone_s": alone["seconds"], "beside_busy_s": beside["seconds"], "trials": [alone["runs"], beside["runs"]],
                "ratio": round(beside["seconds"] / alone["seconds"], 2),
                "threads_alone": alone["threads"], "threads_beside_busy": beside["threads"],
                "idle_cores_seen": [alone["idle_cores_seen"], beside["idle_cores_seen"]],
                "quiet_before": [alone["quiet"], beside["quiet"]]}
            print(mode, name, result["runs"][mode][name], file=sys.stderr, flush=True)
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT / "src"))
    print(json.dumps(threads_benchmark(), indent=2))
