"""The schema of params `spectra`: the spectrum-from-image family's latent, heads, sources and gate."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.features.params import FEATURE_SOURCES
from galaxyprop.spectra.names import SPECTRUM_HEADS
from galaxyprop.validation.rules import Schema, fail


def _check_spectra(spectra: Mapping, params: Mapping) -> None:
    """The spectrum heads and the feature sources they learn from; the served model takes the cutouts alone."""
    sources = set(FEATURE_SOURCES) | set((params.get("features") or {}).get("combined") or [])
    for i, name in enumerate(spectra["heads"]):
        if name not in SPECTRUM_HEADS:
            fail(f"spectra.heads[{i}]", f"'{name}' is not one of {sorted(SPECTRUM_HEADS)}")
    for i, name in enumerate(spectra["features"]):
        if name not in sources:
            fail(f"spectra.features[{i}]", f"'{name}' is not a feature source ({sorted(sources)})")
    for i, name in enumerate(spectra["registry"]["features"]):
        if name not in ("image", "measured"):
            fail(f"spectra.registry.features[{i}]", f"'{name}' does not come from the cutouts alone (image, measured)")
        if name not in spectra["features"]:
            fail(f"spectra.registry.features[{i}]", f"'{name}' is not in spectra.features")


SPECTRA_SCHEMA = Schema(
    rules={"spectra": "map", "spectra.latent": "map", "spectra.latent.n_components": "count",
           "spectra.features": "strs", "spectra.heads": "strs", "spectra.knn": "map?", "spectra.mlp": "map?",
           "spectra.n_samples": "count", "spectra.gallery": "count", "spectra.registry": "map",
           "spectra.registry.features": "strs", "spectra.promotion": "map",
           "spectra.promotion.field_tolerance": "open01", "spectra.promotion.drift_limit": "positive"},
    required={"spectra": ("latent", "features", "heads", "n_samples", "gallery", "registry", "promotion"),
              "spectra.registry": ("features",), "spectra.promotion": ("field_tolerance", "drift_limit")},
    checks={"spectra": _check_spectra})
