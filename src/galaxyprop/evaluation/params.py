"""The schema of params `evaluation`, and of the metric names other sections use (`targets.<t>.metric`):
the names are those the metric functions compute."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.validation.rules import Schema, fail, got


def metric_names(target: str | None) -> tuple[set[str], set[str]]:
    """The point metrics of `target` (None: those of every target) and the density metrics, by the
    functions that compute them."""
    import numpy as np

    from galaxyprop.evaluation.metrics import pit_metrics, regression_metrics, target_metrics

    y = np.array([0.1, 0.2, 0.3])
    point = set(target_metrics(target, y, y, 0.05) if target else regression_metrics(y, y, 0.05))
    return point, set(pit_metrics(np.array([0.2, 0.5, 0.8]))) | {"crps"}


def check_metric(key: str, value: str, allowed: set[str]) -> None:
    if value not in allowed:
        fail(key, f"must be a known metric, one of {sorted(allowed)}, {got(value)}")


def _check_target_metrics(targets: Mapping, params: Mapping) -> None:
    for name, spec in targets.items():
        if isinstance(spec, Mapping) and "metric" in spec:
            check_metric(f"targets.{name}.metric", spec["metric"], metric_names(name)[0])


def _check_head_objectives(heads: Mapping, params: Mapping) -> None:
    point, density = metric_names(None)
    for name, spec in heads.items():
        if isinstance(spec, Mapping) and "objective" in spec:
            check_metric(f"heads.{name}.objective", spec["objective"], point | density)


#: `evaluation`, and the metric names `targets.<t>.metric` and `heads.<h>.objective` give
EVALUATION_SCHEMA = Schema(
    rules={"evaluation.eta_threshold": "positive", "evaluation.n_redshift_bins": "count",
           "evaluation.kept_fractions": "fractions"},
    checks={"targets": _check_target_metrics, "heads": _check_head_objectives})
