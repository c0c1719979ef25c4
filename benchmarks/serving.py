"""Serving and batch-prediction benchmarks of a registered image-in model, in a project after `dvc repro`.

- batch: `galaxyprop predict` over an AstroCLIP file of the test split's cutouts and one ten times
  larger, in chunks of 1024: galaxies/s and the command's peak RSS (constant memory: the peaks agree);
- served: `galaxyprop serve` on 127.0.0.1, then bounded loops of POSTs of 1, 64 and 1024 real
  cutouts to /invocations: latency p50/p99 and galaxies/s, beside the same model in process.

Run alone (`python benchmarks/serving.py [PROJECT]`, default: this workspace) it serves the
`candidate` alias, so the registry is not changed, and merges its figures into reports/bench.json.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
from project_copy import run  # noqa: E402

TARGET = "kcorr_r01"
REPEATS = {1: 100, 64: 20, 1024: 5}
CHUNK = 1024      # galaxies per batch-prediction chunk: both files span several, so their peaks compare


def split_cutouts(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from galaxyprop.data.astroclip import AstroclipFile

    test = pd.read_parquet(root / "data/prepared/test.parquet")
    with AstroclipFile(root / "data/raw/astroclip.h5") as file:
        return test["id"].to_numpy(), file.cutouts(test["image_row"].to_numpy())


def write_copies(path: Path, images: np.ndarray, copies: int) -> Path:
    """An AstroCLIP file with `copies` copies of `images` (new TARGETIDs), written a copy at a time."""
    from galaxyprop.data.astroclip import N_SPECTRUM_PIXELS, astroclip_writer

    n = len(images)
    zeros = np.zeros((n, N_SPECTRUM_PIXELS), np.float32)
    with astroclip_writer(path, n * copies, images.shape[-1]) as writer:
        for i in range(copies):
            writer.write(i * n, np.moveaxis(images, 1, -1), zeros, zeros, np.zeros(n), np.arange(n) + i * n)
    return path


def peak_rss_mib(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command, measured by a wrapper process of its own."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)")
    seconds, rss = run([sys.executable, "-c", probe, *cmd], cwd).stdout.split()
    return float(seconds), float(rss)


def batch_benchmark(root: Path, model: str, images: np.ndarray) -> dict:
    result = {}
    with tempfile.TemporaryDirectory(prefix="galaxyprop-batch-") as tmp:
        for copies in (1, 10):
            path = write_copies(Path(tmp) / f"x{copies}.h5", images, copies)
            out = Path(tmp) / f"x{copies}.parquet"
            seconds, rss = peak_rss_mib(["galaxyprop", "predict", TARGET, "--model", model, "--input", str(path),
                                         "--output", str(out), "--chunk-size", str(CHUNK)], root)
            n = len(pd.read_parquet(out, columns=["TARGETID"]))
            result[f"x{copies}"] = {"n_galaxies": n, "chunk_size": CHUNK, "seconds": round(seconds, 2),
                                    "galaxies_per_s": round(n / seconds, 1), "peak_rss_mib": round(rss, 1)}
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, body: bytes) -> float:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"served model answered {response.status}")
    return time.perf_counter() - start


def served_benchmark(root: Path, model: str, images: np.ndarray) -> dict:
    import mlflow

    port = _free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(["galaxyprop", "serve", TARGET, "--model", model, "--port", str(port)], cwd=root,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError("galaxyprop serve exited before serving") from None
                time.sleep(0.2)
        mlflow.set_tracking_uri(f"sqlite:///{root}/mlruns/mlflow.db")
        mlflow.set_registry_uri(f"sqlite:///{root}/mlruns/mlflow.db")
        in_process = mlflow.pyfunc.load_model(f"models:/galaxyprop-{TARGET}@{model}")
        result = {}
        for batch, repeats in REPEATS.items():
            body = json.dumps({"inputs": images[:batch].tolist()}).encode()
            _post(f"http://127.0.0.1:{port}/invocations", body)          # warm-up
            latencies = np.array([_post(f"http://127.0.0.1:{port}/invocations", body) for _ in range(repeats)])
            start = time.perf_counter()
            in_process.predict(images[:batch])
            local = time.perf_counter() - start
            result[f"batch_{batch}"] = {
                "requests": repeats, "payload_mib": round(len(body) / 2**20, 2),
                "latency_p50_ms": round(1e3 * np.percentile(latencies, 50), 1),
                "latency_p99_ms": round(1e3 * np.percentile(latencies, 99), 1),
                "galaxies_per_s": round(batch * repeats / latencies.sum(), 1),
                "in_process_ms": round(1e3 * local, 1)}
        return result
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def serving_benchmarks(root: Path, model: str = "candidate") -> dict:
    _, images = split_cutouts(root)
    served = images if len(images) >= max(REPEATS) else np.concatenate([images] * (max(REPEATS) // len(images) + 1))
    return {"model": f"galaxyprop-{TARGET}@{model}", "image_shape": list(images.shape[1:]),
            "batch_predict": batch_benchmark(root, model, images), "served": served_benchmark(root, model, served)}


def merge_into_bench(section: str, result: dict) -> None:
    """Put one benchmark's figures into reports/bench.json under `section`, keeping the rest."""
    out = PROJECT / "reports" / "bench.json"
    bench = json.loads(out.read_text()) if out.exists() else {}
    bench[section] = result
    out.write_text(json.dumps(bench, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def main() -> None:
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else PROJECT
    merge_into_bench("serving", serving_benchmarks(root))


if __name__ == "__main__":
    main()
