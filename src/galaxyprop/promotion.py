"""The promotion gate: pure decisions on a candidate's and production's evaluations, no MLflow.

An evaluation maps `all` and each survey field present in the test data (`north`, `south`) to the
promotion metric. The candidate must be no worse than production overall, no worse by more than
`field_tolerance` (relative) on any field, and, on a field where drift was detected, meet
`drift_limit` outright.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from galaxyprop.errors import GalaxypropError
from galaxyprop.config import section
from galaxyprop.metrics import is_better, objective_value, target_metrics

OVERALL = "all"


@dataclass(frozen=True)
class Gate:
    metric: str
    field_tolerance: float = 0.1          # a field may be this much worse (relative), for its smaller sample
    drift_limit: float | None = None      # the metric a candidate must reach on a drifted field

    @classmethod
    def from_params(cls, params: Mapping, target: str, metric: str) -> "Gate":
        limits = params.get("drift_limits") or {}
        limit = (limits.get(target) or {}).get(metric)
        return cls(metric, float(params.get("field_tolerance", 0.1)), None if limit is None else float(limit))


def drifted_fields(summary: Mapping) -> list[str]:
    """Fields whose data drifted from the reference, from a drift summary
    `{"<reference>_vs_<current>": {"detected": bool, ...}}` (controls within one field are skipped)."""
    fields = []
    for comparison, verdict in summary.items():
        reference, _, current = comparison.partition("_vs_")
        if not current:
            raise GalaxypropError(f"drift summary: comparison '{comparison}' is not named <reference>_vs_<current>")
        field = current.split("_")[0]
        if verdict.get("detected") and field != reference.split("_")[0] and field not in fields:
            fields.append(field)
    return fields


def _worse_beyond(metric: str, candidate: float, reference: float, tolerance: float) -> bool:
    cand, ref = objective_value(metric, candidate), objective_value(metric, reference)
    return cand > ref + tolerance * abs(ref)


def problems(gate: Gate, candidate: Mapping[str, float], production: Mapping[str, float] | None,
             drifted: Sequence[str] = ()) -> list[str]:
    """Why the candidate may not be promoted (empty: it may)."""
    found = []
    unevaluated = sorted(f for f, v in candidate.items() if not math.isfinite(v))
    if unevaluated:
        found.append(f"no finite {gate.metric} on {unevaluated}")
    for field in drifted:
        value = candidate.get(field)
        if value is None:
            found.append(f"drift detected on '{field}' but the test data has no galaxies from it to evaluate on")
        elif gate.drift_limit is None:
            found.append(f"drift detected on '{field}' and no drift limit for {gate.metric} is set in params")
        elif not is_better(gate.metric, value, gate.drift_limit):
            found.append(f"drift detected on '{field}': {gate.metric} there = {value:.4g} misses the limit "
                         f"{gate.drift_limit:.4g}")
    if production is None:
        return found
    if not is_better(gate.metric, candidate[OVERALL], production[OVERALL]):
        found.append(f"worse overall ({gate.metric} {candidate[OVERALL]:.4g} vs production {production[OVERALL]:.4g})")
    for field in sorted(set(candidate) & set(production) - {OVERALL}):
        if _worse_beyond(gate.metric, candidate[field], production[field], gate.field_tolerance):
            found.append(f"worse on '{field}' by more than {gate.field_tolerance:.0%} ({gate.metric} "
                         f"{candidate[field]:.4g} vs production {production[field]:.4g})")
    return found


def describe(evaluation: Mapping[str, float]) -> str:
    return ", ".join(f"{field} {value:.4g}" for field, value in evaluation.items())


def metric_function(params: Mapping) -> Callable[[str, np.ndarray, np.ndarray], dict[str, float]]:
    """`metric_of(target, truth, prediction)` -> {name: value}: each target's promotion metric
    (`targets.<t>.metric`, with its outlier threshold and `evaluation.eta_threshold`)."""
    def metric_of(target: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        spec = section(params, f"targets.{target}")
        value = target_metrics(target, y_true, y_pred, spec["outlier_threshold"],
                               section(params, "evaluation.eta_threshold"))[spec["metric"]]
        return {spec["metric"]: float(value)}
    return metric_of
