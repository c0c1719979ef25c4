"""Print, per target and head, what calibration did on the test split (from a workspace after `dvc repro`):
68 % coverage and PIT KS raw -> calibrated (with the KS noise level), CRPS raw -> calibrated, the
point metric of the densities' median raw -> calibrated, and which head was registered and why.

    python tools/calibration_table.py [--markdown]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.calibration import ks_noise
from galaxyprop.config import load_params, section
from galaxyprop.data import schema
from galaxyprop.data.density_file import read_densities
from galaxyprop.errors import exit_on_error
from galaxyprop.evaluation.densities import quantiles
from galaxyprop.evaluation.metrics import target_metrics
from galaxyprop.workspace import densities_path

REPORTS = Path("reports")


def median_metrics(path: Path, truth: pd.Series, target: str, params: dict, raw: bool) -> dict[str, float]:
    """The point metrics of the densities' medians on the test split."""
    ids, pdf, grid = read_densities(path, split="test", raw=raw)
    median = quantiles(pdf, grid, np.array([0.5]))[:, 0]
    return target_metrics(target, truth.loc[ids].to_numpy(float), median,
                          section(params, f"targets.{target}.outlier_threshold"),
                          section(params, "evaluation.eta_threshold"))


def change(name: str, raw: dict, calibrated: dict) -> str:
    return f"{name} {raw[name]:.4g} -> {calibrated[name]:.4g} ({100 * (calibrated[name] / raw[name] - 1):+.1f} %)"


@exit_on_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    args = parser.parse_args()
    params = load_params()
    metrics = json.loads((REPORTS / "metrics.json").read_text())
    registered = json.loads((REPORTS / "registered.json").read_text())
    test = pd.read_parquet("data/prepared/test.parquet").set_index(schema.ID)
    default = section(params, "features.default")
    rows = []
    for target, heads in metrics.items():
        metric = section(params, f"targets.{target}.metric")
        chosen = [entry for entry in registered.values() if entry.get("target") == target]
        for head, m in heads.items():
            if "pit_ks" not in m:
                continue
            name = head if "@" in head or head in ("cnn", "cnn_mm") else f"{head}@{default}"
            path = densities_path(target, name)
            raw_median = median_metrics(path, test[target], target, params, raw=True)
            cal_median = median_metrics(path, test[target], target, params, raw=False)
            model = next((e["model"] for e in chosen if e.get("head") == head), None)
            why = (f"registered as {model}" if model else
                   next((e["skipped"][head] for e in chosen if head in e.get("skipped", {})),
                        "not in registry.candidate_heads"))
            rows.append({"target": target, "head": head,
                         "coverage_68": f"{m['coverage_68_raw']:.3f} -> {m['coverage_68']:.3f}",
                         "coverage_95": f"{m['coverage_95_raw']:.3f} -> {m['coverage_95']:.3f}",
                         "pit_ks (noise)": f"{m['pit_ks_raw']:.3f} -> {m['pit_ks']:.3f} "
                                           f"({ks_noise(len(test)):.3f})",
                         "crps": f"{m['crps_raw']:.5f} -> {m['crps']:.5f}",
                         "median's point accuracy": "; ".join(change(k, raw_median, cal_median)
                                                              for k in dict.fromkeys([metric, "mae"])),
                         "registry": why})
    frame = pd.DataFrame(rows)
    if args.markdown:
        print("| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns))
        for row in frame.itertuples(index=False):
            print("| " + " | ".join(str(v) for v in row) + " |")
    else:
        with pd.option_context("display.width", 250, "display.max_colwidth", 60):
            print(frame.to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
