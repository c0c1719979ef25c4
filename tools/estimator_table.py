"""Every head of a finished run, RAIL's and galaxyprop's, on one target's test split, as one Markdown table:
sigma_MAD, eta, bias, CRPS, PIT KS, 68/95 % coverage (the served, calibrated densities), qp's CDE loss, tuning
and prediction speed, and the registered candidate's ratios to the best RAIL estimator. Run in the workspace
of the run (e.g. a `dvc exp run -S data.source=sdss_gst ...` with the RAIL heads in `train.feature_heads`):

    python tools/estimator_table.py --target z --out reports/experiments/sdss_gst_rail/estimators.md

qp computes the CDE loss from the pipeline's own density files (data/densities), so every number comes from
the run's outputs; nothing is typed by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.config import load_params
from galaxyprop.data import schema
from galaxyprop.data.density_file import read_densities
from galaxyprop.evaluation.densities import to_qp
from galaxyprop.workspace import PREPARED, REPORTS, TIMINGS, densities_path

COLUMNS = ("sigma_mad", "eta", "bias", "crps", "pit_ks", "coverage_68", "coverage_95")


def cde_loss(target: str, result: str) -> float | None:
    """qp's CDE loss of the result's test densities (None when the run kept no density file for it)."""
    from qp.metrics.concrete_metric_classes import CDELossMetric

    path = densities_path(target, result)
    if not path.exists():
        return None
    ids, pdf, grid = read_densities(path, split="test")
    truth = pd.read_parquet(PREPARED / "test.parquet").set_index(schema.ID)[target]
    return float(CDELossMetric(grid.centres).evaluate(to_qp(pdf, grid), truth.loc[ids].to_numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="z")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params("params.yaml")
    metrics = json.loads((REPORTS / "metrics.json").read_text())[args.target]
    registered = json.loads((REPORTS / "registered.json").read_text())
    rows = []
    for result, values in sorted(metrics.items(), key=lambda kv: kv[1].get("crps", np.inf)):
        if "crps" not in values:
            continue
        name = result if "@" in result else f"{result}@{params['features']['default']}"
        timing_file = TIMINGS / f"train:{result}:{args.target}.json"
        timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
        rows.append({"result": result, "family": "RAIL" if result.startswith("rail_") else "galaxyprop",
                     **{c: values[c] for c in COLUMNS}, "cde_loss": cde_loss(args.target, name),
                     "tune_s": timing.get("tune_seconds"), "predict_per_s": timing.get("predict_galaxies_per_s")})
    table = pd.DataFrame(rows)
    lines = [f"# Every estimator on `{args.target}` ({params['data']['source']}, test split)", "",
             table.to_markdown(index=False, floatfmt=".4g"), ""]
    entry = next((e for e in registered.values() if e.get("target") == args.target and e.get("version")), None)
    rail = table[table["family"] == "RAIL"]
    if entry is not None and len(rail):
        served = metrics[entry["head"]]
        best = {c: rail[c].min() for c in ("sigma_mad", "crps")}
        lines += [f"Registered `{entry['model']}` v{entry['version']} (`{entry['head']}`): "
                  + ", ".join(f"{c} {served[c]:.4g} = {served[c] / best[c]:.3f} x the best RAIL estimator's "
                              f"({best[c]:.4g}, `{rail.loc[rail[c].idxmin(), 'result']}`)" for c in best) + "."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
