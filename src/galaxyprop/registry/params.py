"""The schema of params `registry`: which heads may become each registered model's candidate, the
selection rule, and the promotion gate."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.evaluation.params import check_metric, metric_names
from galaxyprop.features.params import FEATURE_SOURCES
from galaxyprop.heads import BATCH_DEPENDENT_HEADS, FEATURE_HEADS, IMAGE_HEADS, MULTIMODAL_HEADS
from galaxyprop.results import ResultName
from galaxyprop.validation.rules import Schema, fail, reuse


def _check_registry(registry: Mapping, params: Mapping) -> None:
    from galaxyprop.registry.promotion import CalibrationRule

    features_params = params.get("features", {})
    compare = (set(features_params.get("compare") or []) | set(features_params.get("secondary") or [])
               | set(features_params.get("combined") or []) | set(FEATURE_SOURCES))
    end_to_end = {**IMAGE_HEADS, **MULTIMODAL_HEADS}
    for i, entry in enumerate(registry["candidate_heads"]):
        result = ResultName.parse(entry)
        head, at, features = result.head, bool(result.features), result.features
        if head not in {**FEATURE_HEADS, **end_to_end}:
            fail(f"registry.candidate_heads[{i}]", f"names an unknown head '{head}'; known: "
                                                   f"{sorted({**FEATURE_HEADS, **end_to_end})}")
        if head in BATCH_DEPENDENT_HEADS:
            fail(f"registry.candidate_heads[{i}]", f"'{head}' cannot be served: its answers depend on the batch "
                                                   f"({BATCH_DEPENDENT_HEADS[head]})")
        if at and head in end_to_end:
            fail(f"registry.candidate_heads[{i}]", f"'{entry}': the image head '{head}' takes no @features")
        if at and features not in compare:
            fail(f"registry.candidate_heads[{i}]", f"'{entry}': the features must be one of {sorted(compare)}")
    point, density = metric_names(None)
    selection = registry["selection"]
    if "metric" in selection:
        check_metric("registry.selection.metric", selection["metric"], point | density)
    reuse("registry.selection", lambda: CalibrationRule.from_params(selection))
    promotion = registry.get("promotion") or {}
    reuse("registry.promotion.calibration", lambda: CalibrationRule.from_params(promotion.get("calibration")))
    targets = params.get("targets") or {}
    for target, limits in (promotion.get("drift_limits") or {}).items():
        if target not in targets:
            fail("registry.promotion.drift_limits", f"names an unknown target '{target}'; known: {sorted(targets)}")
        point, density = metric_names(target)
        for metric in limits:
            check_metric(f"registry.promotion.drift_limits.{target}", metric, point)


REGISTRY_SCHEMA = Schema(
    rules={"registry.candidate_heads": "strs", "registry.selection": "map", "registry.selection.metric": "str",
           "registry.selection.coverage_tolerance": "open01", "registry.selection.noise_sigmas": "nonneg",
           "registry.selection.ks_noise_factor": "positive", "registry.promotion": "map",
           "registry.promotion.field_tolerance": "open01", "registry.promotion.calibration": "map?",
           "registry.promotion.calibration.coverage_tolerance": "open01",
           "registry.promotion.calibration.noise_sigmas": "nonneg",
           "registry.promotion.calibration.ks_noise_factor": "positive", "registry.promotion.drift_limits": "map?",
           "registry.promotion.drift_limits.*": "map", "registry.promotion.drift_limits.*.*": "positive"},
    required={"registry": ("candidate_heads", "selection")},
    closed={"registry.selection": {"metric", "coverage_tolerance", "noise_sigmas", "ks_noise_factor"}},
    checks={"registry": _check_registry})
