"""Modules that moved when each capability got its own package (issue 19), importable by their old
names so that models pickled and registered before the move still load: a pickle names its classes
by module (`galaxyprop.predictor.Predictor`) and an old registered model's pyfunc entry file imports
`galaxyprop.serving`. An old name resolves to the very module object of the new one."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old module -> new module. Old names that are packages now (registry, tracking, cli) are absent:
#: nothing stored refers to them.
MOVED = {
    "galaxyprop.adaptation": "galaxyprop.heads.adversarial",
    "galaxyprop.batch": "galaxyprop.deploy.batch",
    "galaxyprop.spark": "galaxyprop.deploy.spark",
    "galaxyprop.drift_cli": "galaxyprop.cli.drift",
    "galaxyprop.registry_cli": "galaxyprop.cli.registry",
    "galaxyprop.comparison": "galaxyprop.evaluation.comparison",
    "galaxyprop.densities": "galaxyprop.evaluation.densities",
    "galaxyprop.plots": "galaxyprop.evaluation.plots",
    "galaxyprop.metrics": "galaxyprop.evaluation.metrics",
    "galaxyprop.drift": "galaxyprop.monitoring.drift",
    "galaxyprop.drift_samples": "galaxyprop.monitoring.samples",
    "galaxyprop.features.contrastive": "galaxyprop.encoder.contrastive",
    "galaxyprop.features.networks": "galaxyprop.encoder.networks",
    "galaxyprop.features.pairs": "galaxyprop.encoder.pairs",
    "galaxyprop.features.embedding": "galaxyprop.encoder.embedding",
    "galaxyprop.features.spectra": "galaxyprop.encoder.spectra",
    "galaxyprop.predictor": "galaxyprop.registry.predictor",
    "galaxyprop.pyfunc_entry": "galaxyprop.registry.pyfunc_entry",
    "galaxyprop.serving": "galaxyprop.registry.serving",
    "galaxyprop.promotion": "galaxyprop.registry.promotion",
    "galaxyprop.store_lock": "galaxyprop.registry.lock",
    "galaxyprop.tuning": "galaxyprop.tracking.tuning",
    "galaxyprop.data.mock": "galaxyprop.mock",
    "galaxyprop.evaluation.metrics.retrieval": "galaxyprop.encoder.retrieval",
}


def new_name(name: str) -> str | None:
    """The module an old name stands for (`galaxyprop.metrics.point` -> `galaxyprop.evaluation.metrics.point`)."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return None


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if new_name(fullname) else None

    def create_module(self, spec):
        return importlib.import_module(new_name(spec.name))

    def exec_module(self, module) -> None:
        """Nothing to run: the module is the new one, already imported."""


def install() -> None:
    if not any(isinstance(finder, _OldNames) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OldNames())   # before the path finders: an old package's submodules too
