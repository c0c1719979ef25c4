"""`galaxyprop summary`: what the last `dvc repro` produced, in a dozen lines, and what to do next.

Per target: each registered model's candidate (multimodal, images, catalogue: the result the registry
selected on the validation split among those taking that input) with its test-split metric and
68 % / 95 % interval coverage, overall and per survey field, and the best result on the test metric
if no candidate is it; then where the reports are and the next commands.
"""

from __future__ import annotations

import argparse
import json

from galaxyprop.config import load_params, section
from galaxyprop.errors import GalaxypropError, reading
from galaxyprop.lazy import lazy_module
from galaxyprop.workspace import BREAKDOWN, COMPARISON, EVALUATION_PLOTS, METRICS, REGISTERED

checks = lazy_module("galaxyprop.calibration.checks")
promotion = lazy_module("galaxyprop.registry.promotion")
project = lazy_module("galaxyprop.validation.project")


def _read(path) -> dict:
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run `make run` (or `dvc repro`) first")
    with reading(path, "pipeline report"):
        return json.loads(path.read_text())


def lines(params: dict) -> list[str]:
    metrics, registered = _read(METRICS), (_read(REGISTERED) if REGISTERED.exists() else {})
    calibration = _read(BREAKDOWN).get("calibration_by_field", {}) if BREAKDOWN.exists() else {}
    out = ["galaxyprop: the pipeline's results (test split)"]
    # the promotion gate's calibration rule for the served intervals, applied to the pipeline's test figures
    gate_rule = promotion.CalibrationRule.from_params(section(params, "registry.promotion").get("calibration"))
    for target, heads in metrics.items():
        metric = section(params, f"targets.{target}.metric")
        chosen = {model: entry for model, entry in registered.items()
                  if entry.get("target", model) == target and entry.get("head")}
        for entry in chosen.values():
            head, values = entry["head"], heads[entry["head"]]
            text = f"  {target:<10} {entry.get('inputs', ''):<10} {head:<26} {metric} {values[metric]:.4g}"
            fields = calibration.get(target, {}).get(head, {}).get("test", {}).get("calibrated", {})
            if "coverage_68" in values:
                text += f"  coverage 68 % {values['coverage_68']:.3f} / 95 % {values['coverage_95']:.3f}"
                per_field = [f"{f} {v['coverage_68']:.3f}" for f, v in fields.items() if f != "all"]
                if per_field:
                    text += f" (68 % by field: {', '.join(per_field)})"
            out.append(text + f"  -> {entry['model']} v{entry['version']} @candidate")
            failing = gate_rule.problems(fields, "test") if fields else []
            if failing:
                out.append(f"  {'':<10} ! {entry['model']} fails its promotion gate on these figures (`galaxyprop "
                           f"promote` will refuse it): {'; '.join(failing)}")
        scored = {h: m[metric] for h, m in heads.items() if metric in m and not h.startswith("kcorrect_")}
        from galaxyprop.evaluation.metrics import objective_value

        best = min(scored, key=lambda h: objective_value(metric, scored[h]))
        if best not in {entry["head"] for entry in chosen.values()}:
            out.append(f"  {'':<10} best on the test {metric}: {best} ({scored[best]:.4g}); "
                       "(each candidate is chosen on validation CRPS among the calibrated results of its inputs)")
    out += [f"  nominal coverage: 68 % = {checks.NOMINAL['coverage_68']:.3f}, 95 % = {checks.NOMINAL['coverage_95']:.3f}",
            f"Head-by-head comparison: {COMPARISON}; plots: {EVALUATION_PLOTS}/",
            "Next: `make ui` (MLflow UI on 127.0.0.1:5000), `galaxyprop promote <model>` (gate the candidate into "
            "production; z, z-images, z-catalogue, ...), `galaxyprop serve <model>` (HTTP on 127.0.0.1:5001), "
            "`dvc metrics diff HEAD~1`."]
    return out


def _summary(args: argparse.Namespace) -> int:
    print("\n".join(lines(load_params(args.params, project.SCHEMAS))))
    return 0


def add_command(commands) -> None:
    p = commands.add_parser("summary", help="the last run's best model per target, its calibration, the next commands")
    p.set_defaults(func=_summary)
