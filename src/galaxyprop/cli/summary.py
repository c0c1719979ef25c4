"""`galaxyprop summary`: what the last `dvc repro` produced, in a dozen lines, and what to do next.

Per target: the registered candidate (the head the registry selected on the validation split) with
its test-split metric and 68 % / 95 % interval coverage, overall and per survey field, the best
eligible head on the test metric if that is another one, and the best model on other inputs
(`<head>@photometry`); then where the reports are and the next commands.
"""

from __future__ import annotations

import argparse
import json

from galaxyprop.calibration import NOMINAL
from galaxyprop.config import load_params, section
from galaxyprop.errors import GalaxypropError, reading
from galaxyprop.evaluation.metrics import objective_value
from galaxyprop.workspace import BREAKDOWN, COMPARISON, EVALUATION_PLOTS, METRICS, REGISTERED


def _read(path) -> dict:
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run `make run` (or `dvc repro`) first")
    with reading(path, "pipeline report"):
        return json.loads(path.read_text())


def lines(params: dict) -> list[str]:
    metrics, registered = _read(METRICS), (_read(REGISTERED) if REGISTERED.exists() else {})
    calibration = _read(BREAKDOWN).get("calibration_by_field", {}) if BREAKDOWN.exists() else {}
    out = ["galaxyprop: the pipeline's results (test split)"]
    for target, heads in metrics.items():
        metric = section(params, f"targets.{target}.metric")
        eligible = set(section(params, "registry.candidate_heads"))
        scored = {h: m[metric] for h, m in heads.items() if metric in m and h in eligible}
        best = min(scored, key=lambda h: objective_value(metric, scored[h]))
        others = {h: m[metric] for h, m in heads.items() if metric in m and "@" in h}
        other = min(others, key=lambda h: objective_value(metric, others[h])) if others else None
        chosen = registered.get(target, {})
        head = chosen.get("head", best)
        values = heads[head]
        text = f"  {target:<10} {head:<16} {metric} {values[metric]:.4g}"
        if "coverage_68" in values:
            text += f"  coverage 68 % {values['coverage_68']:.3f} / 95 % {values['coverage_95']:.3f}"
            fields = calibration.get(target, {}).get(head, {}).get("test", {}).get("calibrated", {})
            per_field = [f"{f} {v['coverage_68']:.3f}" for f, v in fields.items() if f != "all"]
            if per_field:
                text += f" (68 % by field: {', '.join(per_field)})"
        if chosen:
            text += f"  -> {chosen['model']} v{chosen['version']} @candidate"
        out.append(text)
        if best != head:
            out.append(f"  {'':<10} best on the test {metric}: {best} ({scored[best]:.4g}); "
                       "(the candidate is chosen on validation CRPS among the calibrated heads)")
        if other:
            out.append(f"  {'':<10} from other inputs: {other} {metric} {others[other]:.4g}")
    out += [f"  nominal coverage: 68 % = {NOMINAL['coverage_68']:.3f}, 95 % = {NOMINAL['coverage_95']:.3f}",
            f"Head-by-head comparison: {COMPARISON}; plots: {EVALUATION_PLOTS}/",
            "Next: `make ui` (MLflow UI on 127.0.0.1:5000), `galaxyprop promote <target>` (gate the candidate into "
            "production), `galaxyprop serve <target>` (HTTP on 127.0.0.1:5001), `dvc metrics diff HEAD~1`."]
    return out


def _summary(args: argparse.Namespace) -> int:
    print("\n".join(lines(load_params(args.params))))
    return 0


def add_command(commands) -> None:
    p = commands.add_parser("summary", help="the last run's best model per target, its calibration, the next commands")
    p.set_defaults(func=_summary)
