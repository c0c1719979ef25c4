"""Models stored before the package layout changed still load: old module names resolve to the new modules."""

from __future__ import annotations

import importlib
import pickle

from galaxyprop import _moved
from galaxyprop.registry.promotion import Gate


def test_old_names_are_the_new_modules():
    import galaxyprop.predictor as old
    import galaxyprop.registry.predictor as new

    assert old is new and old.Predictor is new.Predictor
    assert importlib.import_module("galaxyprop.metrics.point") is importlib.import_module("galaxyprop.evaluation.metrics.point")
    assert _moved.new_name("galaxyprop.serving") == "galaxyprop.registry.serving"
    assert _moved.new_name("galaxyprop.heads.knn") is None and _moved.new_name("galaxyprop.registry") is None
    for old_name, new_name in _moved.MOVED.items():   # every entry points at a module that exists
        assert importlib.import_module(old_name) is importlib.import_module(new_name)


def test_a_pickle_written_under_the_old_layout_loads():
    gate = Gate(metric="sigma_mad", field_tolerance=0.2, drift_limit=0.05)
    text = pickle.dumps(gate, protocol=0)             # protocol 0 names the class as text: module\nname
    assert b"galaxyprop.registry.promotion\n" in text
    old = text.replace(b"galaxyprop.registry.promotion\n", b"galaxyprop.promotion\n")
    loaded = pickle.loads(old)
    assert type(loaded) is Gate and loaded == gate
