"""Tuning wall time with 1 and 2 workers on one PostgreSQL study (the team store), -> bench.json "team".

The study: the gbt head (params.yaml heads.gbt: its search space and fixed settings) tuned for a
photo-z on the 10,000 real SDSS galaxies that ship with kcorrect (ugriz model-flux colours and r,
spectroscopic redshifts), scored on a validation half by sigma_MAD, the same objective and trial count
for both; each run is a new study in a throw-away PostgreSQL (tests/postgres_server.py).

Run alone: `python benchmarks/team.py [--trials 8]` prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))

from postgres_server import postgres_server  # noqa: E402


def sdss_photoz() -> tuple[np.ndarray, np.ndarray]:
    """Colours and r magnitude of kcorrect's test galaxies with positive ugriz fluxes, and their redshifts."""
    import kcorrect
    from astropy.io import fits

    path = Path(os.path.dirname(kcorrect.__file__)) / "data" / "test" / "gst_tests_small.fits"
    with fits.open(path) as hdul:
        data = hdul[1].data
        flux, z = np.asarray(data["MODELFLUX"], float), np.asarray(data["Z"], float)
    good = (flux > 0).all(axis=1) & (z > 0)
    mags = 22.5 - 2.5 * np.log10(flux[good])
    features = np.column_stack([mags[:, 2], -np.diff(mags, axis=1)]).astype(np.float32)
    return features, z[good]


def tuning_workers_benchmark(n_trials: int = 8, workers: tuple[int, ...] = (1, 2)) -> dict:
    from galaxyprop.config import load_params
    from galaxyprop.evaluation.metrics import target_metrics
    from galaxyprop.heads import make_head
    from galaxyprop.tracking.tuning import WORKER_ATTR, tune

    gbt = load_params(PROJECT / "params.yaml")["heads"]["gbt"]
    X, y = sdss_photoz()
    order = np.random.default_rng(0).permutation(len(y))
    train, val = order[: len(y) // 2], order[len(y) // 2:]

    def objective(hyper: dict, trial) -> tuple[float, dict]:
        head = make_head("gbt", **{**hyper, **gbt.get("fixed", {})}, seed=0)
        head.fit(X[train], y[train])
        sigma = target_metrics("z", y[val], head.predict(X[val]).value, 0.05, 0.05)["sigma_mad"]
        return sigma, {"sigma_mad": sigma}

    result = {"study": f"gbt photo-z on kcorrect's {len(y)} SDSS galaxies (half train, half validation)",
              "n_trials": n_trials, "cores": len(os.sched_getaffinity(0)), "runs": {}}
    with postgres_server() as base:
        for n in workers:
            start = time.perf_counter()
            study = tune(objective, gbt["search"], n_trials=n_trials, study_name=f"bench-workers-{n}",
                         storage=f"{base}/optuna", seed=0, workers=n)
            seconds = time.perf_counter() - start
            complete = [t for t in study.trials if t.state.name == "COMPLETE"]
            result["runs"][str(n)] = {"wall_s": round(seconds, 2), "n_complete": len(complete),
                                      "trials_per_worker": sorted(
                                          [sum(t.user_attrs[WORKER_ATTR].endswith(f"/{i}") for t in complete)
                                           for i in range(n)], reverse=True),
                                      "best_sigma_mad": round(study.best_value, 5)}
    if {"1", "2"} <= set(result["runs"]):
        result["speedup_2_workers"] = round(result["runs"]["1"]["wall_s"] / result["runs"]["2"]["wall_s"], 2)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=8)
    print(json.dumps(tuning_workers_benchmark(parser.parse_args().trials), indent=2))
