"""Run the pipeline on one survey given in each AstroCLIP layout and compare the metrics.

The tiny mock survey is run as it is imported (the flat HDF5 layout); its images + spectra file is
then written again as the grouped release file (groups of unequal lengths) and as HuggingFace-style
Parquet shards, each made a `desi` source with the same FastSpecFit catalogue, and `dvc repro` runs
on each. Same rows, same split: every metric must be the same.

    python tools/layout_equivalence.py [--keep DIR]

Prints, per layout, how many of the metrics in reports/metrics.json and val_metrics.json are equal to
the flat run's, and the largest difference; exits 1 if any differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from galaxyprop.config import load_params

from astroclip_layouts import write_grouped, write_parquet_shards
from project_copy import copy_project, edit_params, run, tiny_profile

REPORTS = ("reports/metrics.json", "reports/val_metrics.json")


def flatten(node, prefix: str = "") -> dict[str, float]:
    if isinstance(node, dict):
        return {k: v for key, child in node.items() for k, v in flatten(child, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node} if isinstance(node, (int, float)) else {}


def metrics(root: Path) -> dict[str, float]:
    out = {}
    for name in REPORTS:
        out.update({f"{Path(name).stem}.{k}": v for k, v in flatten(json.loads((root / name).read_text())).items()})
    return out


def repro(root: Path, source: str | None = None) -> float:
    if source is not None:
        edit_params(root, lambda params: params["data"].__setitem__("source", source))
    start = time.time()
    run(["dvc", "repro"], root)
    return time.time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="run in this folder and keep it (default: a temporary one, removed)")
    args = parser.parse_args()
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="layouts-"))
    base.mkdir(parents=True, exist_ok=True)
    root = copy_project(base / "project")
    edit_params(root, tiny_profile)
    params = load_params(root / "params.yaml")
    took = {"flat": repro(root)}
    flat = metrics(root)

    files = base / "files"
    files.mkdir(exist_ok=True)
    shutil.copyfile(root / "data/raw/fastspec.fits", files / "fastspec.fits")
    n = int(params["mock"]["n_galaxies"])
    lengths = [n // 10 + (7 if i % 2 else -7) for i in range(10)]
    lengths[-1] += n - sum(lengths)
    grouped = write_grouped(root / "data/raw/astroclip.h5", files / "astroclip_desi.1.1.5.h5", lengths,
                            compression="gzip")
    write_parquet_shards(root / "data/raw/astroclip.h5", files / "shards", n_train_shards=3, n_test_shards=1,
                         row_group_size=64, subdir="data")
    layouts = {"grouped": grouped, "parquet": files / "shards"}
    def add_layouts(params: dict) -> None:
        for layout, images in layouts.items():
            params["data"]["sources"][f"desi_{layout}"] = {"kind": "desi", "images": str(images),
                                                           "catalog": str(files / "fastspec.fits"),
                                                           "required_bands": ["g", "r", "z", "W1"], "split": "random"}
    edit_params(root, add_layouts)
    failed = False
    print(f"flat (mock, as imported): dvc repro {took['flat']:.0f} s, {len(flat)} metrics")
    for layout in layouts:
        took[layout] = repro(root, f"desi_{layout}")
        got = metrics(root)
        keys = sorted(set(flat) | set(got))
        equal = [k for k in keys if k in flat and k in got and (flat[k] == got[k] or (np.isnan(flat[k]) and np.isnan(got[k])))]
        worst = max((abs(flat[k] - got[k]) for k in keys if k in flat and k in got and k not in equal), default=0.0)
        print(f"{layout}: dvc repro {took[layout]:.0f} s; {len(equal)} of {len(keys)} metrics identical "
              f"to the flat run's; largest difference {worst:.3g}")
        for k in [k for k in keys if k not in equal][:10]:
            print(f"  {k}: flat {flat.get(k)} vs {layout} {got.get(k)}")
        failed |= len(equal) != len(keys)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
