"""Drift benchmarks, in a project after `dvc repro`:

- the drift stage at default size (`python pipelines/drift.py`, wall time);
- Evidently's embedding drift methods alone (classifier AUC; MMD, whose kernel matrix is
  (n_ref + n_cur)^2) on Gaussian embeddings, against rows and against dimensions;
- one comparison with its full HTML report (compare + save_html) on the default data, without and
  with Evidently's embeddings report (its t-SNE), and against rows on synthetic catalogues;
- the control's false-alarm rate against the size of the current batch.

Run alone (`python benchmarks/drift.py [PROJECT]`, default: this workspace) it merges its figures
into reports/bench.json under "drift".
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
from project_copy import run  # noqa: E402


def timed(func, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - start, result


def embedding_methods() -> dict:
    from galaxyprop.monitoring.drift import DriftSettings, embedding_drift

    rng = np.random.default_rng(0)

    def case(n_ref, dim, method):
        reference = rng.normal(0, 1, (n_ref, dim)).astype(np.float32)
        current = rng.normal(0.05, 1, (n_ref // 4, dim)).astype(np.float32)
        seconds, verdict = timed(embedding_drift, reference, current, DriftSettings(embedding_method=method))
        return {"n_reference": n_ref, "n_current": n_ref // 4, "dim": dim, "seconds": round(seconds, 3),
                "score": round(verdict["score"], 4)}

    case(1000, 16, "model")     # the first call pays for imports
    return {"model_vs_rows": [case(n, 128, "model") for n in (1000, 4000, 16000, 64000)],
            "model_vs_dim": [case(4000, d, "model") for d in (16, 128, 512, 1024)],
            "mmd_vs_rows": [case(n, 128, "mmd") for n in (1000, 2000, 4000, 8000)],
            "mmd_vs_dim": [case(4000, d, "mmd") for d in (16, 128, 512, 1024)]}


def default_samples(root: Path):
    """The stage's south_vs_north pair (photometry and embeddings; no predictions) and the south pool."""
    from galaxyprop.data import schema
    from galaxyprop.monitoring.samples import field_mask, to_sample

    frame = pd.concat([pd.read_parquet(root / f"data/prepared/{s}.parquet").assign(split=s) for s in schema.SPLITS],
                      ignore_index=True)
    table = pd.concat([pd.read_parquet(root / f"data/features/image/{s}.parquet") for s in schema.SPLITS])
    embeddings = table.set_index(schema.ID).loc[frame[schema.ID]].to_numpy(np.float32)
    bands = json.loads((root / "data/prepared/bands.json").read_text())["bands"]
    every = to_sample("all", frame, bands, embeddings, targets={})
    south, split = field_mask(frame, "south"), frame["split"].to_numpy()
    reference = every.take(np.flatnonzero(south & (split == "train")), "south")
    north = every.take(np.flatnonzero(field_mask(frame, "north") & (split == "test")), "north")
    return reference, north, every.take(np.flatnonzero(south))


def html_reports(root: Path) -> dict:
    from galaxyprop.monitoring.drift import DriftSettings, compare
    from galaxyprop.monitoring.samples import to_sample
    from test_drift import BANDS, catalogue, gaussian_embeddings

    reference, north, _ = default_samples(root)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        def report(ref, cur, embedding_map):
            def both():
                comparison = compare(ref, cur, DriftSettings(), embedding_map=embedding_map)
                comparison.save_html(Path(tmp) / "report.html")
            seconds, _ = timed(both)
            size = (Path(tmp) / "report.html").stat().st_size
            return {"n_reference": len(ref), "n_current": len(cur), "embedding_map": embedding_map,
                    "seconds": round(seconds, 2), "html_mib": round(size / 2**20, 2)}

        out["default_south_vs_north"] = [report(reference, north, False), report(reference, north, True)]
        out["vs_rows"] = []
        for n in (1000, 4000, 16000, 64000):
            ref = to_sample("ref", catalogue(n, 1), BANDS, gaussian_embeddings(n, 1, dim=128), targets={})
            cur = to_sample("cur", catalogue(n // 4, 2), BANDS, gaussian_embeddings(n // 4, 2, dim=128), targets={})
            out["vs_rows"].append(report(ref, cur, False))
        ref = to_sample("ref", catalogue(16000, 1), BANDS, gaussian_embeddings(16000, 1, dim=128), targets={})
        cur = to_sample("cur", catalogue(4000, 2), BANDS, gaussian_embeddings(4000, 2, dim=128), targets={})
        out["vs_rows"].append(report(ref, cur, True))    # t-SNE on Evidently's sample of 2500 a side
    return out


def false_alarms_vs_batch_size(root: Path, n_splits: int = 100) -> list[dict]:
    from galaxyprop.monitoring.drift import DriftSettings, false_alarm_rate

    reference, _, pool = default_samples(root)
    return [false_alarm_rate(pool, len(reference), n, n_splits, DriftSettings(), seed=n)
            for n in (50, 100, 300, 818)]


def drift_benchmarks(root: Path) -> dict:
    print("drift stage ...", flush=True)
    start = time.perf_counter()
    run([sys.executable, "pipelines/drift.py"], root)
    stage = time.perf_counter() - start
    print("embedding drift methods ...", flush=True)
    methods = embedding_methods()
    print("HTML reports ...", flush=True)
    reports = html_reports(root)
    print("false alarms vs batch size ...", flush=True)
    alarms = false_alarms_vs_batch_size(root)
    return {"stage_s": round(stage, 1), "embedding_methods": methods, "reports": reports,
            "false_alarms_vs_batch_size": alarms}


def main() -> None:
    from serving import merge_into_bench

    merge_into_bench("drift", drift_benchmarks(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else PROJECT))


if __name__ == "__main__":
    main()
