"""Modules imported on first use: the command line's modules name what their commands need without
importing it, so that `galaxyprop --help` and a command that needs no MLflow or scipy answer at once.
(The standard library's `importlib.util.LazyLoader`; no package adds anything this needs.)"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """The module `name`, loaded when one of its attributes is first used (at once if already loaded)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
