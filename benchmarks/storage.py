"""The stores' figures -> reports/bench.json "storage".

1. Bytes per galaxy on disk after the data stage (`dvc repro import_data`) and `dvc push`, with DVC's cache
   copying the outputs (`cache.type copy`, DVC's default on ext4) and with the project's `.dvc/config`
   (hardlinks): the workspace's `data/`, the cache and the local remote, each counted once per inode, and
   their union (what the disk holds).
2. The mock's HDF5 (`astroclip.h5`) rewritten with each of `galaxyprop.data.astroclip.flat.COMPRESSION`:
   bytes per galaxy and the read throughput of what the stages read: images and spectra (with ivar) of
   random batches of 256 rows (the encoder's loader) and of consecutive blocks of 512 (embedding,
   measurement), each the best of three passes over the warm page cache (what decompression costs,
   the disk's speed aside).

Run alone: `python benchmarks/storage.py [--n-galaxies 1500]` (about 2 minutes; merges "storage" into
reports/bench.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))
from project_copy import copy_project, edit_params, run  # noqa: E402

BATCH, BLOCK, PASSES = 256, 512, 3


def unique_bytes(*folders: Path) -> int:
    """Bytes of the regular files under `folders`, each inode once (hardlinked files are one file)."""
    seen: dict[tuple[int, int], int] = {}
    for folder in folders:
        for path in folder.rglob("*") if folder.exists() else ():
            if path.is_file() and not path.is_symlink():
                info = path.stat()
                seen[(info.st_dev, info.st_ino)] = info.st_size
    return sum(seen.values())


def dvc_storage(n_galaxies: int, cache_type: str | None, workdir: Path) -> dict:
    """The data stage at `n_galaxies` in a fresh copy, then `dvc push`: bytes per galaxy in each store.
    `cache_type`: DVC's cache.type for this copy (None: the project's .dvc/config)."""
    root = copy_project(workdir / "project")
    edit_params(root, lambda params: params["mock"].update(n_galaxies=n_galaxies))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "GALAXYPROP_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    if cache_type is not None:
        run(["dvc", "config", "--local", "cache.type", cache_type], root)
    subprocess.run(["dvc", "repro", "import_data"], cwd=root, env=env, check=True, capture_output=True)
    subprocess.run(["dvc", "push", "-q"], cwd=root, env=env, check=True, capture_output=True)
    remote = (root / ".dvc" / run(["dvc", "config", "remote.local.url"], root).stdout.strip()).resolve()
    stores = {"workspace_data": [root / "data"], "dvc_cache": [root / ".dvc/cache"], "remote": [remote]}
    sizes = {name: unique_bytes(*folders) for name, folders in stores.items()}
    sizes["all_unique"] = unique_bytes(*(f for folders in stores.values() for f in folders))
    h5 = root / "data/raw/astroclip.h5"
    return {"cache_type": cache_type or run(["dvc", "config", "cache.type"], root).stdout.strip() or "reflink,copy",
            "astroclip_h5_links": h5.stat().st_nlink, "astroclip_h5_writable": bool(h5.stat().st_mode & 0o222),
            "bytes_per_galaxy": {name: round(size / n_galaxies) for name, size in sizes.items()}}


def rewrite(source: Path, target: Path, compression: str | None) -> None:
    """`source`'s datasets into a new file with `compression`, through the mock's own writer."""
    from galaxyprop.data.astroclip import FlatFile, astroclip_writer

    data = FlatFile(source)
    rows = np.arange(data.n_rows)
    images = data.images(rows)
    flux, ivar = data.spectra(rows)
    ids, z = data.handle["targetids"][:], data.handle["redshifts"][:]
    data.close()
    with astroclip_writer(target, len(rows), images.shape[1], compression) as writer:
        writer.write(0, images, flux, ivar, z, ids)


def read_throughput(path: Path, seed: int = 0) -> dict:
    """Galaxies/s reading images + spectra + ivar: random sorted batches, then consecutive blocks."""
    from galaxyprop.data.astroclip import FlatFile

    data = FlatFile(path)
    n = data.n_rows
    order = np.random.default_rng(seed).permutation(n)
    patterns = {"random_batches": [np.sort(order[i:i + BATCH]) for i in range(0, n, BATCH)],
                "consecutive_blocks": [np.arange(i, min(i + BLOCK, n)) for i in range(0, n, BLOCK)]}
    result = {}
    for name, batches in patterns.items():
        best = np.inf
        for _ in range(PASSES):
            start = time.perf_counter()
            for rows in batches:
                data.images(rows)
                data.spectra(rows)
            best = min(best, time.perf_counter() - start)
        result[f"{name}_galaxies_per_s"] = round(n / best)
    data.close()
    return result


def compression_benchmark(source: Path, workdir: Path) -> dict:
    from galaxyprop.data.astroclip.flat import COMPRESSION, FlatFile

    n = FlatFile(source).n_rows
    result = {}
    for compression in COMPRESSION:
        target = workdir / f"astroclip-{compression or 'none'}.h5"
        start = time.perf_counter()
        rewrite(source, target, compression)
        result[compression or "none"] = {"bytes_per_galaxy": round(target.stat().st_size / n),
                                         "write_galaxies_per_s": round(n / (time.perf_counter() - start)),
                                         **read_throughput(target)}
    base = result["none"]
    for entry in result.values():
        entry["size_vs_none"] = round(entry["bytes_per_galaxy"] / base["bytes_per_galaxy"], 3)
        for key in ("random_batches", "consecutive_blocks"):
            entry[f"{key}_read_vs_none"] = round(entry[f"{key}_galaxies_per_s"] / base[f"{key}_galaxies_per_s"], 3)
        entry["within_20_percent"] = min(entry["random_batches_read_vs_none"],
                                         entry["consecutive_blocks_read_vs_none"]) >= 0.8
    return result


def storage_benchmarks(n_galaxies: int = 1500) -> dict:
    with tempfile.TemporaryDirectory(prefix="galaxyprop-storage-") as tmp:
        copied = dvc_storage(n_galaxies, "copy", Path(tmp) / "copy")
        linked = dvc_storage(n_galaxies, None, Path(tmp) / "linked")
        compression = compression_benchmark(Path(tmp) / "linked/project/data/raw/astroclip.h5", Path(tmp))
    before, after = copied["bytes_per_galaxy"]["all_unique"], linked["bytes_per_galaxy"]["all_unique"]
    return {"n_galaxies": n_galaxies, "dvc": {"before": copied, "after": linked,
                                              "all_unique_saved": round(1 - after / before, 3)},
            "hdf5_compression": compression}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-galaxies", type=int, default=1500)
    args = parser.parse_args()
    result = storage_benchmarks(args.n_galaxies)
    path = PROJECT / "reports" / "bench.json"
    bench = json.loads(path.read_text()) if path.exists() else {}
    bench["storage"] = result
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(bench, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
