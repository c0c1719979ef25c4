"""Which model becomes the candidate and whether it may become production: pure decisions, no MLflow.

Selection: among the heads whose calibrated validation densities pass the calibration rule, the
best by a proper score (CRPS by default); a head served uncalibrated only when nothing else passes.

The gate: an evaluation maps `all` and each survey field present in the test data (`north`,
`south`) to the promotion metric and the served intervals' calibration (`coverage_68`,
`coverage_95`, `pit_ks`, `n`). The candidate must pass the calibration rule overall and on every
field, be no worse than production overall, no worse by more than `field_tolerance` (relative) on
any field, and, on a field where drift was detected, meet `drift_limit` outright.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from galaxyprop.calibration import OVERALL, calibration_rule_problems, calibration_summary, field_groups
from galaxyprop.config import section
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid
from galaxyprop.evaluation.metrics import is_better, objective_value, target_metrics

Evaluation = Mapping[str, Mapping[str, float]]   # field -> {metric: value, coverage_68, coverage_95, pit_ks, n}


@dataclass(frozen=True)
class CalibrationRule:
    """68 % coverage within `coverage_tolerance` of 0.683 (or `noise_sigmas` binomial standard errors,
    if more), PIT KS below `ks_noise_factor` x 1.358/sqrt(n)."""

    coverage_tolerance: float = 0.05
    ks_noise_factor: float = 2.0
    noise_sigmas: float = 2.5

    @classmethod
    def from_params(cls, params: Mapping | None) -> CalibrationRule:
        params = params or {}
        try:
            rule = cls(float(params.get("coverage_tolerance", cls.coverage_tolerance)),
                       float(params.get("ks_noise_factor", cls.ks_noise_factor)),
                       float(params.get("noise_sigmas", cls.noise_sigmas)))
        except (TypeError, ValueError) as err:
            raise GalaxypropError(f"params.yaml: calibration rule {dict(params)}: {err}") from None
        if not (0 < rule.coverage_tolerance < 0.683 and rule.ks_noise_factor > 0 and rule.noise_sigmas >= 0):
            raise GalaxypropError(f"params.yaml: calibration rule needs 0 < coverage_tolerance < 0.683, "
                                  f"ks_noise_factor > 0 and noise_sigmas >= 0, got {dict(params)}")
        return rule

    def problems(self, by_field: Mapping[str, Mapping[str, float]], split: str) -> list[str]:
        found = []
        for field, values in by_field.items():
            if "coverage_68" not in values or "pit_ks" not in values:
                found.append(f"no calibration measured on {split} '{field}'")
            else:
                found += calibration_rule_problems(values, self.coverage_tolerance, self.ks_noise_factor,
                                                   self.noise_sigmas, where=f"{split} '{field}'")
        return found


def select_candidate(heads: Sequence[str], val_metrics: Mapping[str, Mapping[str, float]],
                     val_calibration: Mapping[str, Mapping[str, Mapping[str, float]]],
                     uncalibrated: Mapping[str, str], metric: str,
                     rule: CalibrationRule) -> tuple[str | None, dict[str, str]]:
    """The candidate among `heads` and why each other head was skipped. `val_calibration[head]`: the
    calibrated validation densities per field (`all`, `N`, ...); `uncalibrated[head]`: why a head is
    served uncalibrated (too few validation rows). None when no head passes the rule."""
    reasons: dict[str, list[str]] = {}
    for head in heads:
        if head not in val_metrics:
            reasons[head] = ["no validation metrics (not trained in this run)"]
            continue
        found = [] if metric in val_metrics[head] else [f"no validation {metric} (the head gives no density)"]
        found += rule.problems(val_calibration.get(head) or {OVERALL: {}}, "validation")
        reasons[head] = found
    passing = [h for h in heads if not reasons[h]]
    for tier in ([h for h in passing if h not in uncalibrated], passing):
        if tier:
            best = min(tier, key=lambda h: objective_value(metric, val_metrics[h][metric]))
            skipped = {h: "; ".join(r) for h, r in reasons.items() if r}
            skipped.update({h: f"served uncalibrated: {uncalibrated[h]}" for h in passing
                            if h in uncalibrated and h != best and best not in uncalibrated})
            skipped.update({h: f"{metric} {val_metrics[h][metric]:.5g} vs {best}'s {val_metrics[best][metric]:.5g}"
                            for h in passing if h != best and h not in skipped})
            return best, skipped
    return None, {h: "; ".join(r) for h, r in reasons.items()}


@dataclass(frozen=True)
class Gate:
    metric: str
    field_tolerance: float = 0.1          # a field may be this much worse (relative), for its smaller sample
    drift_limit: float | None = None      # the metric a candidate must reach on a drifted field
    calibration: CalibrationRule | None = None   # the served intervals' rule on the test split (None: unchecked)

    @classmethod
    def from_params(cls, params: Mapping, target: str, metric: str) -> Gate:
        limits = params.get("drift_limits") or {}
        limit = (limits.get(target) or {}).get(metric)
        return cls(metric, float(params.get("field_tolerance", 0.1)), None if limit is None else float(limit),
                   CalibrationRule.from_params(params.get("calibration")))


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


def problems(gate: Gate, candidate: Evaluation, production: Evaluation | None,
             drifted: Sequence[str] = ()) -> list[str]:
    """Why the candidate may not be promoted (empty: it may)."""
    found = []
    unevaluated = sorted(f for f, v in candidate.items() if not math.isfinite(v.get(gate.metric, math.nan)))
    if unevaluated:
        found.append(f"no finite {gate.metric} on {unevaluated}")
    if gate.calibration is not None:
        found += gate.calibration.problems(candidate, "test")
    candidate = {f: v.get(gate.metric, math.nan) for f, v in candidate.items()}
    production = None if production is None else {f: v.get(gate.metric, math.nan) for f, v in production.items()}
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


def served_evaluation(served: pd.DataFrame, truth: np.ndarray, fields: np.ndarray | None, grid: Grid | None,
                      target: str, metric: str, outlier_threshold: float, eta_threshold: float) -> Evaluation:
    """What a model served for the test galaxies, judged overall and on each field (`fields`: one
    name per galaxy, or None): the metric of its `prediction` and, where it serves quantiles and
    densities (on `grid`), the coverage of [q16, q84] and [q02, q98] and the densities' PIT KS."""
    truth = np.asarray(truth, float)
    out: dict[str, dict[str, float]] = {}
    for field, rows in field_groups(fields, len(truth)).items():
        metrics = target_metrics(target, truth[rows], served["prediction"].to_numpy()[rows], outlier_threshold,
                                 eta_threshold)
        if metric not in metrics:
            raise GalaxypropError(f"unknown metric '{metric}' for {target}; choose from {sorted(metrics)}")
        out[field] = {metric: float(metrics[metric])}
    if grid is not None and {"density", "q02", "q16", "q84", "q98"} <= set(served.columns):
        intervals = {"coverage_68": (served["q16"].to_numpy(), served["q84"].to_numpy()),
                     "coverage_95": (served["q02"].to_numpy(), served["q98"].to_numpy())}
        measured = calibration_summary(np.stack(served["density"].to_numpy()), grid, truth, fields, intervals)
        for field, values in measured.items():
            out[field].update({k: values[k] for k in ("n", "coverage_68", "coverage_95", "pit_ks")})
    return out


def describe(evaluation: Evaluation, metric: str) -> str:
    """The metric and the served intervals' coverage on each field, in words."""
    def one(values: Mapping[str, float]) -> str:
        text = f"{values.get(metric, math.nan):.4g}"
        if "coverage_68" in values:
            text += (f" (68 %/95 % coverage {values['coverage_68']:.3f}/{values.get('coverage_95', math.nan):.3f}, "
                     f"PIT KS {values.get('pit_ks', math.nan):.3f}, n {int(values.get('n', 0))})")
        return text
    return ", ".join(f"{field} {one(values)}" for field, values in evaluation.items())


def metric_function(params: Mapping) -> Callable[[str, np.ndarray, np.ndarray], dict[str, float]]:
    """`metric_of(target, truth, prediction)` -> {name: value}: each target's promotion metric
    (`targets.<t>.metric`, with its outlier threshold and `evaluation.eta_threshold`)."""
    def metric_of(target: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        spec = section(params, f"targets.{target}")
        value = target_metrics(target, y_true, y_pred, spec["outlier_threshold"],
                               section(params, "evaluation.eta_threshold"))[spec["metric"]]
        return {spec["metric"]: float(value)}
    return metric_of
