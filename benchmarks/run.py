"""Benchmarks -> reports/bench.json: cold and no-op `dvc repro` on the default params (with the
data stage timed alone), mock-survey simulation speed per core at 64 and 152 pixels, file sizes
per 10k galaxies, KNN throughput, the contrastive encoder's time per epoch and peak RSS,
embedding throughput (images/s, spectra/s; on the GPU too when there is one), per head its
tuning wall time, prediction throughput and its stage's peak RSS, CLAP's training time and
densities/s through its refitted networks and its KNN index as the training set doubles, and the
registered image-in model served over HTTP and batch-predicted over a file (benchmarks/serving.py),
and drift detection: the stage, the embedding methods and HTML reports against rows and dimensions,
false alarms against batch size (benchmarks/drift.py), and what the images could add on the mock
(catalogue vs noiseless photometry vs noiseless + true morphology vs catalogue + measured; benchmarks/ceiling.py),
the cost growth of every stage from 2,500 to 20,000 mock galaxies on a reduced profile, with its projection to
200k and 10^8 galaxies and Spark's batch-prediction core-hours (benchmarks/growth.py: 20-30 min), and the
stores' figures (benchmarks/storage.py) and tuning with 1 and 2 workers on one PostgreSQL study (benchmarks/team.py),
and each feature head's fit alone and beside a busy process, threads `auto` against fixed at the cores (benchmarks/threads.py).

The pipeline runs in a temporary copy of the project (fresh stores), so the workspace is untouched.
`python benchmarks/run.py --only growth storage` runs some sections and merges them into reports/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
sys.path.append(str(PROJECT / "pipelines"))   # after benchmarks/ and tests/: `common` only, never their drift.py
from ceiling import ceiling_benchmark  # noqa: E402
from serving import serving_benchmarks  # noqa: E402

from drift import drift_benchmarks  # noqa: E402
from galaxyprop.config import load_params  # noqa: E402
from galaxyprop.results import metrics_key  # noqa: E402

from project_copy import copy_project, run  # noqa: E402


def stage_timings(root: Path, stage: str) -> dict:
    """A stage's wall times and peak memory, which it leaves in reports/timings (not a DVC output)."""
    from galaxyprop.workspace import timings_path

    return json.loads((root / timings_path(stage)).read_text())


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    run(cmd, cwd)
    return time.perf_counter() - start


def knn_throughput(root: Path) -> dict:
    import pandas as pd

    from galaxyprop.heads import make_head

    train = pd.read_parquet(root / "data/features/photometry/train.parquet").drop(columns="id").to_numpy(np.float32)
    test = pd.read_parquet(root / "data/prepared/train.parquet")["z"].to_numpy()
    queries = np.tile(train, (int(np.ceil(100_000 / len(train))), 1))[:100_000]
    queries = queries + np.random.default_rng(0).normal(0, 0.01, queries.shape).astype(np.float32)
    head = make_head("knn", k=64, weights="distance", scaling="standard")
    start = time.perf_counter()
    head.fit(train, test)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    head.predict(queries)
    predict_s = time.perf_counter() - start
    return {"k": 64, "n_train": len(train), "n_query": len(queries), "fit_s": round(fit_s, 4),
            "predict_s": round(predict_s, 3), "predict_galaxies_per_s": round(len(queries) / predict_s),
            "fit_galaxies_per_s": round(len(train) / fit_s)}


def embedding_throughput(root: Path, n: int = 2048) -> dict:
    """Images and spectra per second through the trained encoder (batched, no gradient, this machine's device)."""
    import torch

    from galaxyprop.data.astroclip import AstroclipFile
    from galaxyprop.encoder.contrastive import ContrastiveModel

    model = ContrastiveModel.load(root / "models/encoder/encoder.pt")
    with AstroclipFile(root / "data/raw/astroclip.h5") as file:
        rows = np.arange(min(n, file.n_rows))
        images, (spectra, _) = file.images(rows), file.spectra(rows)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    result = {}
    for device in devices:
        for kind, embedder, inputs in (("images", model.image_embedder(), images),
                                       ("spectra", model.spectrum_embedder(), spectra)):
            embedder.transform(inputs[:256], device=device)              # warm-up
            start = time.perf_counter()
            embedder.transform(inputs, batch_size=256, device=device)
            result[f"{kind}_per_s_{device}"] = round(len(inputs) / (time.perf_counter() - start), 1)
    return result


def heads_benchmark(root: Path, n_features: int = 20_000, n_images: int = 2048) -> dict:
    """Per trained head: tuning wall time at the default trial counts (complete and pruned trials) and
    the train stage's peak RSS (from its reports/timings file), and prediction throughput in galaxies/s on
    `n_features` feature rows (the test split tiled) or `n_images` cutouts."""
    import pandas as pd

    from galaxyprop.data.astroclip import AstroclipFile
    from galaxyprop.registry.predictor import Predictor

    with AstroclipFile(root / "data/raw/astroclip.h5") as file:
        cutouts = file.cutouts(np.arange(min(n_images, file.n_rows)))
    result = {}
    for summary in sorted((root / "models").glob("*/*/tuning.json")):
        target, name = summary.parent.parent.name, summary.parent.name
        head = Predictor.load(summary.parent / "predictor.joblib").head
        if name == "cnn":
            inputs = cutouts
        else:
            table = pd.read_parquet(root / "data/features" / name.partition("@")[2] / "test.parquet")
            features = table.drop(columns="id").to_numpy(np.float32)
            inputs = np.tile(features, (int(np.ceil(n_features / len(features))), 1))[:n_features]
        head.predict(inputs[:256])                                  # warm-up
        start = time.perf_counter()
        head.predict(inputs)
        rate = len(inputs) / (time.perf_counter() - start)
        tuning = {**json.loads(summary.read_text()), **stage_timings(root, f"train:{metrics_key(name, 'image')}:{target}")}
        result.setdefault(target, {})[name] = {
            "tune_seconds": tuning["tune_seconds"], "n_complete": tuning["n_complete"],
            "n_pruned": tuning["n_pruned"], "stage_peak_rss_mib": tuning["peak_rss_mib"],
            "predict_galaxies_per_s": round(rate, 1), "n_predicted": len(inputs)}
    return result


def clap_benchmark(root: Path, target: str = "z", features: str = "photometry", n_queries: int = 20_000) -> dict:
    """CLAP at the tuned hyperparameters: the pipeline's tuning and ensemble times, then fits of the
    whole ensemble on half and all of the training split, with densities/s on `n_queries` galaxies
    through the refitted networks and through the KNN index, to show how each grows with the training set."""
    import pandas as pd

    from galaxyprop.heads import make_head

    folder = root / "models" / target / f"clap@{features}"
    best = json.loads((folder / "best_params.json").read_text())["params"]
    grid = load_params(root / "params.yaml")["targets"][target]["grid"]

    def split(name):
        table = pd.read_parquet(root / "data/features" / features / f"{name}.parquet").set_index("id")
        frame = pd.read_parquet(root / "data/prepared" / f"{name}.parquet").set_index("id").loc[table.index]
        return table.to_numpy(np.float32), frame[target].to_numpy(float)

    (X, y), validation, (X_test, _) = split("train"), split("val"), split("test")
    queries = np.tile(X_test, (int(np.ceil(n_queries / len(X_test))), 1))[:n_queries]
    rows = []
    for n in (len(X) // 2, len(X)):
        head = make_head("clap", **best, grid=grid)
        start = time.perf_counter()
        head.fit(X[:n], y[:n], validation=validation)
        fit_s = time.perf_counter() - start
        rates = {}
        for path, predict in (("refit", head.predict_pdf), ("knn", head.knn_pdf)):
            predict(queries[:256])                                   # warm-up (the faiss index is built here)
            seconds = []
            for _ in range(3):                                       # the best of three
                start = time.perf_counter()
                predict(queries)
                seconds.append(time.perf_counter() - start)
            rates[f"{path}_densities_per_s"] = round(n_queries / min(seconds), 1)
        rows.append({"n_train": n, "fit_seconds": round(fit_s, 2), **rates})
    stage = {**json.loads((folder / "tuning.json").read_text()),
             **stage_timings(root, f"train:{metrics_key(f'clap@{features}', 'image')}:{target}")}
    return {"target": target, "features": features, "n_realisations": best["n_realisations"],
            "n_bins": grid["n_bins"], "n_queries": n_queries,
            "pipeline": {k: stage[k] for k in ("tune_seconds", "finalise_seconds", "n_complete")},
            "by_training_size": rows,
            "growth_when_training_doubles": {k: round(rows[1][k] / rows[0][k], 2) for k in rows[0] if k != "n_train"}}


def mock_throughput(stamp: int, n: int = 200) -> dict:
    """Galaxies per second on one core: the population draw, then images + spectra."""

    from galaxyprop.mock.survey import draw_survey, render_block

    from conftest import mock_config

    params = load_params(PROJECT / "params.yaml")
    config = mock_config(params, n_galaxies=n, n_jobs=1, **{"imaging.stamp_size": stamp})
    start = time.perf_counter()
    survey = draw_survey(config, progress=False)
    draw_s = time.perf_counter() - start
    render_block(config, survey.population.take(slice(0, 5)), {k: v[:5] for k, v in survey.photometry.items()})
    start = time.perf_counter()     # after the warm-up (GalSim tables, the fibre-fraction grid)
    render_block(config, survey.population, survey.photometry)
    render_s = time.perf_counter() - start
    return {"stamp": stamp, "n": n, "population_galaxies_per_s": round(n / draw_s, 1),
            "images_spectra_galaxies_per_s_per_core": round(n / render_s, 1)}


def file_sizes(root: Path) -> dict:

    n = load_params(root / "params.yaml")["mock"]["n_galaxies"]
    sizes = {f.name: f.stat().st_size for f in (root / "data/raw").iterdir()}
    return {"n_galaxies": n, **{f"{name}_mib_per_10k": round(size / n * 1e4 / 2**20, 1)
                                for name, size in sizes.items()}}


#: the sections of reports/bench.json (`--only` picks some); those in ROOT_SECTIONS run in one copy of the
#: project after a cold `dvc repro` on the default params, whose timings (`pipeline`) come with any of them
ROOT_SECTIONS = ("pipeline", "knn", "encoder", "heads", "clap", "serving", "drift", "image_ceiling")
SECTIONS = (*ROOT_SECTIONS, "mock_simulation", "growth", "storage", "team", "threads")


def pipeline_sections(wanted: set[str]) -> dict:
    """The sections that need the default pipeline's outputs, from one cold `dvc repro` in a temporary copy."""
    with tempfile.TemporaryDirectory(prefix="galaxyprop-bench-") as tmp:
        root = copy_project(Path(tmp))
        print("cold dvc repro (default params) ...", flush=True)
        data_stage = timed(["dvc", "repro", "import_data"], root)
        cold = data_stage + timed(["dvc", "repro"], root)
        peak_rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        noop = timed(["dvc", "repro"], root)
        metrics = json.loads((root / "reports/metrics.json").read_text())
        result = {
            "dvc_repro_cold_s": round(cold, 1),
            "dvc_repro_cold_peak_rss_mib": round(peak_rss_mib, 1),
            "dvc_repro_noop_s": round(noop, 2),
            "data_stage_s": round(data_stage, 1),
            "mock_file_sizes": file_sizes(root),
            "z": {head: {k: m[k] for k in ("sigma_mad", "eta", "bias", "r2")} for head, m in metrics["z"].items()},
            "kcorr_r01": {head: {k: m[k] for k in ("r2", "mae", "mse")} for head, m in metrics["kcorr_r01"].items()},
        }
        if "knn" in wanted:
            result["knn"] = knn_throughput(root)
        if "encoder" in wanted:
            encoder = {**json.loads((root / "reports/encoder.json").read_text()), **stage_timings(root, "train_encoder")}
            result["encoder"] = {
                "seconds_per_epoch": round(encoder["seconds_per_epoch"], 2),
                "epochs_trained": encoder["epochs_trained"], "n_train": encoder["n_train"],
                "device": encoder["device"], "train_stage_peak_rss_mib": round(encoder["peak_rss_mib"], 1),
                "n_parameters": encoder["n_parameters"],
                **{k: round(v, 4) for k, v in encoder.items() if k.endswith(("_top1", "_top5", "_loss"))},
                "embedding": embedding_throughput(root)}
        if "heads" in wanted:
            result["heads"] = heads_benchmark(root)
        if "clap" in wanted:
            result["clap"] = clap_benchmark(root)
        if "serving" in wanted:
            result["serving"] = serving_benchmarks(root)
        if "drift" in wanted:
            result["drift"] = drift_benchmarks(root)
        if "image_ceiling" in wanted:
            result["image_ceiling"] = ceiling_benchmark(root)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run these sections alone and merge them into reports/bench.json ({', '.join(SECTIONS)}; "
                             "default: all, and the file is written anew)")
    parser.add_argument("--growth-sizes", type=int, nargs="+", default=None,
                        help="mock galaxies per growth run (default: benchmarks/growth.py's)")
    args = parser.parse_args()
    wanted = set(args.only or SECTIONS)
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    if wanted & set(ROOT_SECTIONS):
        result.update(pipeline_sections(wanted))
    if "mock_simulation" in wanted:
        result["mock_simulation"] = [mock_throughput(stamp) for stamp in (64, 152)]
    if "growth" in wanted:
        from growth import SIZES, growth_benchmark

        result["growth"] = growth_benchmark(tuple(args.growth_sizes or SIZES))
    if "storage" in wanted:
        from storage import storage_benchmarks

        result["storage"] = storage_benchmarks()
    if "team" in wanted:
        from team import tuning_workers_benchmark

        result["team"] = tuning_workers_benchmark()
    if "threads" in wanted:
        from threads import threads_benchmark

        result["threads"] = threads_benchmark()
    out = PROJECT / "reports" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    if args.only and out.exists():                  # keep the sections not run this time
        result = {**json.loads(out.read_text()), **result}
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
