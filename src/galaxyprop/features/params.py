"""The schema of params `features` (which feature sources the heads learn from, and each source's
settings), and of the feature sources a target names (`targets.<t>.features`)."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.features.combined import is_combined, parts_of
from galaxyprop.results import IMAGE_HEAD_INPUTS
from galaxyprop.validation.rules import Schema, fail, got, reuse

FEATURE_SOURCES = ("image", "spectrum", "photometry", "photometry_grz", "measured", "external")
COMBINABLE = ("image", "photometry", "photometry_grz", "measured")   # the parts a combined source may have


def _check_features(features: Mapping, params: Mapping) -> None:
    combined = list(features.get("combined") or [])
    for i, name in enumerate(combined):
        where = f"features.combined[{i}]"
        reuse(where, lambda name=name: parts_of(name))
        for part in parts_of(name):
            if part not in COMBINABLE:
                fail(where, f"'{name}': '{part}' cannot be a part; parts are {list(COMBINABLE)}")
    for part in features.get("components") or {}:
        if part not in FEATURE_SOURCES:
            fail(f"features.components.{part}", f"is not a feature source, one of {list(FEATURE_SOURCES)}")
    sources = [("features.default", features["default"])]
    sources += [(f"features.{group}[{i}]", v) for group in ("compare", "secondary")
                for i, v in enumerate(features.get(group) or [])]
    for key, value in sources:
        if is_combined(str(value)):
            if value not in combined:
                fail(key, f"'{value}' is a combined source that features.combined does not list ({combined})")
        elif value not in FEATURE_SOURCES:
            fail(key, f"must be a feature source, one of {list(FEATURE_SOURCES)} or of features.combined, "
                      f"{got(value)}")


def _check_target_features(targets: Mapping, params: Mapping) -> None:
    # a source the heads do not train on here (e.g. a catalogue profile's compare list) is simply not used
    for name, spec in targets.items():
        for i, source in enumerate((spec.get("features") if isinstance(spec, Mapping) else None) or []):
            if source not in (*FEATURE_SOURCES, *IMAGE_HEAD_INPUTS) and not is_combined(str(source)):
                fail(f"targets.{name}.features[{i}]", f"'{source}' is not a feature source, one of "
                     f"{list(FEATURE_SOURCES)}, a combined one (parts joined by +) or an image head's inputs "
                     f"{list(IMAGE_HEAD_INPUTS)}")


FEATURES_SCHEMA = Schema(
    rules={"features.default": "str", "features.compare": "strs", "features.photometry.bands": "strs?",
           "features.secondary": "strs?", "features.combined": "strs?", "features.components": "map?",
           "features.components.*": "count", "features.photometry_grz.bands": "strs?", "features.measured": "map",
           "features.measured.chunk_size": "count", "features.measured.pixel_scale": "positive",
           "features.external.path": "str?", "features.external.embedding": "str", "features.external.id_key": "str?",
           "features.external.dim": "count?"},
    required={"features": ("default",)},
    checks={"features": _check_features, "targets": _check_target_features})
