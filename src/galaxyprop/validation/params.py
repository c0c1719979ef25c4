"""The rules params.yaml must follow, checked in one pass before any stage or command runs.

Tables map each key to a rule name (`RULES`); a trailing `?` lets the value be null. Keys a section
lacks are not checked unless listed in `REQUIRED`; unknown keys are accepted, except in the `CLOSED`
sections. Where a parser already validates a group (the catalogue column map, the mock survey, the
calibration settings and rule, the drift tests, the pruner), it is called and its error re-raised
under the group's key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

from galaxyprop.config import GROUP_FILES, locate
from galaxyprop.errors import GalaxypropError


class ParamsError(GalaxypropError):
    """A value of params.yaml that the pipeline cannot use, named by its dotted key."""


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _list_of(rule: str) -> tuple[Callable, str]:
    test, what = RULES[rule]
    what = what.partition(" ")[2]
    for noun in ("integer", "number", "string"):
        what = what.replace(noun, noun + "s", 1)
    return (lambda v: isinstance(v, list) and len(v) > 0 and all(test(x) for x in v), f"a non-empty list of {what}")


#: rule name -> (test, what the value must be)
RULES: dict[str, tuple[Callable[[object], bool], str]] = {
    "int": (_int, "an integer"),
    "count": (lambda v: _int(v) and v >= 1, "a positive integer"),
    "natural": (lambda v: _int(v) and v >= 0, "a non-negative integer"),
    "number": (_num, "a number"),
    "positive": (lambda v: _num(v) and v > 0, "a positive number"),
    "nonneg": (lambda v: _num(v) and v >= 0, "a non-negative number"),
    "prob": (lambda v: _num(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "open01": (lambda v: _num(v) and 0 < v < 1, "a number in (0, 1)"),
    "fraction": (lambda v: _num(v) and 0 < v <= 1, "a number in (0, 1]"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
    "map": (lambda v: isinstance(v, Mapping), "a mapping"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "names": (lambda v: isinstance(v, list) and all(isinstance(x, str) and x != "" for x in v),
              "a list of non-empty strings (maybe empty)"),
}
RULES.update({"strs": _list_of("str"), "counts": _list_of("count"), "fractions": _list_of("fraction"),
              "naturals": _list_of("natural")})

_mlp = {"hidden_layers": "natural", "width": "count", "dropout": "prob", "learning_rate": "positive",
        "weight_decay": "nonneg", "batch_size": "count", "max_epochs": "count", "n_mc": "count", "seed": "int"}
#: dotted key (`*`: any key at that level) -> rule
TABLE: dict[str, str] = {
    **{f"stores.{k}": "str" for k in ("tracking_uri", "artifact_location", "optuna_storage", "experiment_prefix")},
    "data.source": "str", "data.max_rows": "count?", "data.seed": "int", "data.z_min": "number",
    "data.z_max": "number?", "data.sources": "map", "data.sources.*": "map",
    "data.sources.*.required_bands": "strs", "data.sources.*.images": "str", "data.sources.*.catalog": "str",
    "data.sources.*.path": "str",
    "mock.n_galaxies": "count", "mock.seed": "int", "mock.omega_m": "open01", "mock.chunk_size": "count",
    "mock.n_jobs": "int", "mock.noise": "bool", "mock.population": "map", "mock.morphology": "map",
    "mock.imaging": "map", "mock.spectroscopy": "map", "mock.fields": "map",
    "mock.population.r_limit": "number", "mock.population.z_min": "nonneg", "mock.population.z_max": "positive",
    "mock.imaging.stamp_size": "count", "mock.imaging.pixel_scale": "positive", "mock.imaging.moffat_beta": "positive",
    **{f"mock.spectroscopy.{k}": "nonneg" for k in ("fiber_diameter", "seeing_fwhm", "seeing_scatter", "noise_sigma",
                                                    "depth_scatter", "source_noise")},
    "mock.fields.*.fraction": "prob", "mock.fields.*.seeing_scatter": "nonneg",
    "split.fractions": "map", "split.seed": "int", "split.n_redshift_bins": "count",
    "features.default": "str", "features.compare": "strs", "features.photometry.bands": "strs?",
    "features.secondary": "strs?", "features.combined": "strs?", "features.components": "map?",
    "features.components.*": "count", "features.photometry_grz.bands": "strs?", "features.measured": "map",
    "features.measured.chunk_size": "count", "features.measured.pixel_scale": "positive",
    "features.external.path": "str?", "features.external.embedding": "str", "features.external.id_key": "str?",
    "features.external.dim": "count?",
    "encoder.model.embedding_dim": "count", "encoder.model.image_widths": "counts",
    "encoder.model.spectrum_widths": "counts", "encoder.model.aperture_radii": "list", "encoder.model.crop": "count",
    "encoder.model.max_shift": "natural", "encoder.model.spectrum_std_floor": "positive",
    "encoder.model.logit_scale": "positive", "encoder.model.learn_logit_scale": "bool",
    "encoder.model.learning_rate": "positive", "encoder.model.weight_decay": "nonneg",
    "encoder.training.max_epochs": "count", "encoder.training.patience": "natural",
    "encoder.training.batch_size": "count", "encoder.training.num_workers": "natural", "encoder.training.seed": "int",
    "encoder.training.devices": "count",
    "encoder.embedding.batch_size": "count", "encoder.embedding.chunk_size": "count",
    "targets.*": "map", "targets.*.metric": "str", "targets.*.outlier_threshold": "positive", "targets.*.grid": "map",
    "targets.*.grid.low": "number", "targets.*.grid.high": "number", "targets.*.grid.n_bins": "count",
    "targets.*.column": "str?", "targets.*.log10": "bool", "targets.*.subtract": "str?",
    "targets.*.description": "str", "targets.*.n_trials": "map?", "targets.*.n_trials.*": "count",
    "targets.*.features": "strs?",
    "data.sources.*.targets": "map?", "adaptation.targets": "strs?",
    "spectra": "map", "spectra.latent": "map", "spectra.latent.n_components": "count", "spectra.features": "strs",
    "spectra.heads": "strs", "spectra.knn": "map?", "spectra.mlp": "map?", "spectra.n_samples": "count",
    "spectra.gallery": "count", "spectra.registry": "map", "spectra.registry.features": "strs",
    "spectra.promotion": "map", "spectra.promotion.field_tolerance": "open01",
    "spectra.promotion.drift_limit": "positive",
    "calibration.min_calibration_rows": "count", "calibration.folds": "count", "calibration.kernel_bins": "naturals",
    "calibration.refine": "count", "calibration.floor": "prob", "calibration.seed": "int",
    "evaluation.eta_threshold": "positive", "evaluation.n_redshift_bins": "count",
    "evaluation.kept_fractions": "fractions",
    "tuning.seed": "int", "tuning.pruner": "map?", "tuning.pruner.kind": "str", "tuning.workers": "count",
    "train.targets": "strs", "train.feature_heads": "strs", "train.image_heads": "names",
    "train.secondary_heads": "strs?",
    "heads": "map", "heads.*": "map", "heads.*.n_trials": "count", "heads.*.search": "map",
    "heads.*.fixed": "map?", "heads.*.objective": "str",
    "baselines.*": "map", "baselines.*.bands": "strs?", "baselines.*.n_mc": "count", "baselines.*.seed": "int",
    "baselines.*.redshift_from": "str", "baselines.*.features": "strs?",
    "registry.candidate_heads": "strs", "registry.selection": "map", "registry.selection.metric": "str",
    "registry.selection.coverage_tolerance": "open01", "registry.selection.noise_sigmas": "nonneg",
    "registry.selection.ks_noise_factor": "positive", "registry.promotion": "map",
    "registry.promotion.field_tolerance": "open01", "registry.promotion.calibration": "map?",
    "registry.promotion.calibration.coverage_tolerance": "open01",
    "registry.promotion.calibration.noise_sigmas": "nonneg",
    "registry.promotion.calibration.ks_noise_factor": "positive", "registry.promotion.drift_limits": "map?",
    "registry.promotion.drift_limits.*": "map", "registry.promotion.drift_limits.*.*": "positive",
    "drift.reference_field": "str", "drift.tests": "map?", "drift.tests.column_method": "str",
    "drift.tests.alarm_rate": "open01", "drift.tests.column_threshold": "nonneg?",
    "drift.tests.drift_share": "fraction?",
    "drift.tests.embedding_method": "str", "drift.tests.embedding_threshold": "nonneg?",
    "drift.tests.embedding_bootstrap": "bool?", "drift.embedding_map": "bool", "drift.control_splits": "natural",
    "drift.seed": "int",
    "adaptation.adversary_weight": "nonneg", "adaptation.discriminator_speed": "positive", "adaptation.mlp": "map",
    **{f"adaptation.mlp.{k}": rule for k, rule in _mlp.items()},
}
#: keys a present section must have (the code reads them without a default)
REQUIRED = {
    "stores": ("tracking_uri", "artifact_location", "optuna_storage"), "data": ("source", "sources"),
    "split": ("fractions", "seed"), "features": ("default",),
    "targets.*": ("metric", "outlier_threshold", "grid"), "targets.*.grid": ("low", "high", "n_bins"),
    "heads.*": ("n_trials", "search"), "registry": ("candidate_heads", "selection"),
    "train": ("targets", "feature_heads"),
    "drift": ("reference_field",), "adaptation": ("mlp",),
    "spectra": ("latent", "features", "heads", "n_samples", "gallery", "registry", "promotion"),
    "spectra.registry": ("features",), "spectra.promotion": ("field_tolerance", "drift_limit"),
}
#: sections whose unknown keys are errors (the code would silently ignore a misspelt one)
CLOSED = {"split": {"fractions", "seed", "n_redshift_bins"},
          "split.fractions": {"train", "val", "test"},
          "calibration": {"min_calibration_rows", "folds", "kernel_bins", "refine", "floor", "seed"},
          "registry.selection": {"metric", "coverage_tolerance", "noise_sigmas", "ks_noise_factor"}}

#: hyperparameters the heads take as integers (fixed values, choices and range bounds alike)
INT_HYPERPARAMETERS = {"k", "max_leaf_nodes", "min_samples_leaf", "max_iter", "seed", "hidden_layers", "width",
                       "batch_size", "max_epochs", "patience", "n_mc", "latent_dim", "k_min", "k_max",
                       "n_calibration", "recalibration_degree", "projection_width", "projection_layers",
                       "refit_width", "refit_layers", "n_realisations", "channels", "crop", "max_shift",
                       "photometry_layers", "photometry_width", "photometry_epochs"}
STR_HYPERPARAMETERS = {"weights": ("uniform", "distance"), "scaling": ("standard", "robust", "none")}
FEATURE_SOURCES = ("image", "spectrum", "photometry", "photometry_grz", "measured", "external")
COMBINABLE = ("image", "photometry", "photometry_grz", "measured")   # the parts a combined source may have
SOURCE_KINDS = ("desi", "catalog")


_LEADING_KEY = re.compile(r"^([A-Za-z_][\w@-]*(?:\.[\w@*\[\]-]+)*)(:?)(\s.*)?$", re.S)


def located(text: str) -> ParamsError:
    """The error for `text` that starts with a dotted key, naming the file the key is written in:
    `mock.fields.north.fraction must ...` -> `mock.yaml: fields.north.fraction must ...`."""
    match = _LEADING_KEY.match(text)
    if match is None:
        return ParamsError(f"params.yaml: {text}".splitlines()[0])
    return ParamsError(f"{locate(match.group(1))}{match.group(2)}{match.group(3) or ''}".splitlines()[0])


def fail(key: str, problem: str) -> None:
    raise located(f"{key} {problem}")


def _got(value) -> str:
    return f"got {value!r}"


def check_rule(key: str, value, rule: str) -> None:
    optional = rule.endswith("?")
    if optional and value is None:
        return
    test, what = RULES[rule.rstrip("?")]
    if not test(value):
        fail(key, f"must be {what}{' or null' if optional else ''}, {_got(value)}")


def _walk(node, pattern: list[str], path: list[str]):
    """(dotted key, value) of every key of `node` matching `pattern` (`*`: any key)."""
    if not pattern:
        yield ".".join(path), node
        return
    if not isinstance(node, Mapping):
        return
    head, rest = pattern[0], pattern[1:]
    for key in (list(node) if head == "*" else [head] if head in node else []):
        yield from _walk(node[key], rest, [*path, str(key)])


def check_tables(params: Mapping) -> None:
    for pattern, keys in REQUIRED.items():
        for key, node in _walk(params, pattern.split("."), []):
            if isinstance(node, Mapping):
                for name in keys:
                    if name not in node:
                        fail(f"{key}.{name}", "is missing")
    for pattern, known in CLOSED.items():
        for key, node in _walk(params, pattern.split("."), []):
            unknown = sorted(set(node) - known) if isinstance(node, Mapping) else []
            if unknown:
                fail(key, f"has unknown keys {unknown}; known: {sorted(known)}")
    for pattern, rule in TABLE.items():
        for key, value in _walk(params, pattern.split("."), []):
            check_rule(key, value, rule)
    for key, value in _seeds(params, ""):
        check_rule(key, value, "int")


def _seeds(node, prefix: str):
    if isinstance(node, Mapping):
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if key == "seed" and not isinstance(value, Mapping):
                yield dotted, value
            yield from _seeds(value, dotted + ".")


def reuse(key: str, parse: Callable[[], object]) -> None:
    """Run a parser that validates its group; its error becomes one line under `key`."""
    try:
        parse()
    except GalaxypropError as err:
        text = (str(err).splitlines() or [""])[0]
        if text.startswith(tuple(f"{name}: " for name in GROUP_FILES.values())):   # located already
            raise ParamsError(text) from None
        for prefix in ("params.yaml: ", "params "):
            text = text.removeprefix(prefix)
        if key.startswith("data.sources.") and text.startswith("data.") and not text.startswith(key):  # its own keys
            text = key + text.removeprefix("data")
        raise located(text if text.startswith(key.split('.')[0]) else f"{key}: {text}") from None
    except (TypeError, ValueError, KeyError) as err:
        raise located(f"{key}: {type(err).__name__}: {err}") from None


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
        fail(key, f"must be a known metric, one of {sorted(allowed)}, {_got(value)}")


def check_data(data: Mapping, params: Mapping) -> None:
    from galaxyprop.data.catalog import CatalogSpec
    from galaxyprop.data.sources import source_files, split_of
    from galaxyprop.data.targets import target_columns

    sources = data["sources"]
    if data["source"] not in sources:
        fail("data.source", f"must be one of data.sources {sorted(sources)}, {_got(data['source'])}")
    if data.get("z_max") is not None and data.get("z_min", 0.0) >= data["z_max"]:
        fail("data.z_min", f"must be below data.z_max ({data['z_max']}), {_got(data.get('z_min', 0.0))}")
    for name, spec in sources.items():
        key = f"data.sources.{name}"
        if spec.get("kind") not in SOURCE_KINDS:
            fail(f"{key}.kind", f"must be one of {list(SOURCE_KINDS)}, {_got(spec.get('kind'))}")
        reuse(key, lambda name=name, spec=spec: split_of(name, spec))
        if name == data["source"]:
            reuse(key, lambda name=name, spec=spec: source_files(name, spec))
        reuse(f"{key}.targets", lambda name=name, spec=spec: target_columns(
            params.get("targets") or {}, name, spec, list(spec.get("targets") or {})))
        if spec["kind"] == "desi":
            continue
        z_range = {"z_min": data.get("z_min", 0.0), "z_max": data.get("z_max")}
        reuse(key, lambda spec=spec, z_range=z_range: CatalogSpec.from_params({**spec, **z_range}))
        label = spec.get("label")
        if label is None:
            continue
        check_rule(f"{key}.label", label, "map")
        for field, rule in (("bands", "strs"), ("response_out", "str"), ("response_map", "str"),
                            ("band_shift", "nonneg")):
            check_rule(f"{key}.label.{field}", label.get(field), rule)
    if data["source"] == "mock" and not isinstance(params.get("mock"), Mapping):
        fail("mock", "is missing: data.source is 'mock'")


def check_split(split: Mapping) -> None:
    fractions = split["fractions"]
    missing = sorted({"train", "val", "test"} - set(fractions))
    if missing:
        fail("split.fractions", f"needs train, val and test, missing {missing}")
    for name, value in fractions.items():
        check_rule(f"split.fractions.{name}", value, "prob")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        fail("split.fractions", f"must sum to 1, got {total:.6g} ({dict(fractions)})")


def check_targets(targets: Mapping, params: Mapping) -> None:
    from galaxyprop.data import schema
    from galaxyprop.data.targets import TargetColumn, check_name
    from galaxyprop.features.combined import is_combined
    from galaxyprop.heads import FEATURE_HEADS, IMAGE_HEADS, MULTIMODAL_HEADS

    if schema.REDSHIFT not in targets:
        fail(f"targets.{schema.REDSHIFT}", "is missing (the redshift: the kcorrect baselines and drift read it)")
    heads = {**FEATURE_HEADS, **IMAGE_HEADS, **MULTIMODAL_HEADS}
    for name, spec in targets.items():
        reuse("targets", lambda name=name: check_name(name, "params targets"))
        check_metric(f"targets.{name}.metric", spec["metric"], metric_names(name)[0])
        if name != schema.REDSHIFT and spec.get("column") is not None:
            reuse(f"targets.{name}", lambda name=name, spec=spec: TargetColumn.from_spec(
                name, {k: spec[k] for k in ("column", "log10", "subtract") if k in spec}, f"params targets.{name}"))
        for head in spec.get("n_trials") or {}:
            if head not in heads:
                fail(f"targets.{name}.n_trials", f"names an unknown head '{head}'; known: {sorted(heads)}")
        # a source the heads do not train on here (e.g. a catalogue profile's compare list) is simply not used
        for i, source in enumerate(spec.get("features") or []):
            if source not in FEATURE_SOURCES and not is_combined(str(source)):
                fail(f"targets.{name}.features[{i}]", f"'{source}' is not a feature source, one of "
                     f"{list(FEATURE_SOURCES)} or a combined one (parts joined by +)")
        grid = spec["grid"]
        if grid["low"] >= grid["high"]:
            fail(f"targets.{name}.grid", f"needs low < high, got low {grid['low']}, high {grid['high']}")
        if grid["n_bins"] < 2:
            fail(f"targets.{name}.grid.n_bins", f"must be at least 2, {_got(grid['n_bins'])}")


def check_hyperparameter(key: str, name: str, value) -> None:
    if isinstance(value, (Mapping, list)) or (value is not None and not isinstance(value, (bool, int, float, str))):
        fail(key, f"must be a number, string, true/false or null, {_got(value)}")
    if name in INT_HYPERPARAMETERS and not _int(value):
        fail(key, f"must be an integer, {_got(value)}")
    if name in STR_HYPERPARAMETERS and value not in STR_HYPERPARAMETERS[name]:
        fail(key, f"must be one of {list(STR_HYPERPARAMETERS[name])}, {_got(value)}")


def check_search(key: str, space: Mapping, fixed: Mapping) -> None:
    """As `tuning.suggest` reads it: a list is a choice, a mapping {low, high, log?} a range; settings
    that are not searched are in `fixed` (the sibling key), each named once."""
    for name in sorted(set(space) & set(fixed)):
        fail(f"{key}.{name}", f"is both searched and in {key.rpartition('.')[0]}.fixed: keep one")
    for name, value in fixed.items():
        check_hyperparameter(f"{key.rpartition('.')[0]}.fixed.{name}", name, value)
    for name, spec in space.items():
        where = f"{key}.{name}"
        if isinstance(spec, list):
            if not spec:
                fail(where, "must list at least one choice, got []")
            for i, choice in enumerate(spec):
                check_hyperparameter(f"{where}[{i}]", name, choice)
        elif isinstance(spec, Mapping):
            unknown = sorted(set(spec) - {"low", "high", "log"})
            if unknown or not {"low", "high"} <= set(spec):
                fail(where, f"must be a range {{low, high, log?}}, got {dict(spec)}")
            for bound in ("low", "high"):
                check_rule(f"{where}.{bound}", spec[bound], "int" if name in INT_HYPERPARAMETERS else "number")
            check_rule(f"{where}.log", spec.get("log", False), "bool")
            if spec["low"] > spec["high"]:
                fail(where, f"needs low <= high, got low {spec['low']}, high {spec['high']}")
            if spec.get("log") and spec["low"] <= 0:
                fail(f"{where}.low", f"must be positive on a log range, {_got(spec['low'])}")
        else:
            fail(where, f"is a fixed value ({spec!r}): searched settings are a list of choices or a range "
                        f"{{low, high, log?}}; put fixed ones in {key.rpartition('.')[0]}.fixed")


def check_heads(heads: Mapping) -> None:
    from galaxyprop.heads import FEATURE_HEADS, IMAGE_HEADS, MULTIMODAL_HEADS

    known = {**FEATURE_HEADS, **IMAGE_HEADS, **MULTIMODAL_HEADS}
    point, density = metric_names(None)
    for name, spec in heads.items():
        if name not in known:
            fail("heads", f"names an unknown head '{name}'; known: {sorted(known)}")
        if "objective" in spec:
            check_metric(f"heads.{name}.objective", spec["objective"], point | density)
        check_search(f"heads.{name}.search", spec["search"], spec.get("fixed") or {})


def check_train(train: Mapping, params: Mapping) -> None:
    """The lists the train stages' matrices run: each name has its settings in `targets` / `heads`."""
    from galaxyprop.heads import FEATURE_HEADS, IMAGE_HEADS, MULTIMODAL_HEADS

    for key, names, known, settings in (("train.targets", train["targets"], params.get("targets", {}), "targets"),
                                        ("train.feature_heads", train["feature_heads"], FEATURE_HEADS, "heads"),
                                        ("train.secondary_heads", train.get("secondary_heads") or [], FEATURE_HEADS,
                                         "heads"),
                                        ("train.image_heads", train.get("image_heads") or [],
                                         {**IMAGE_HEADS, **MULTIMODAL_HEADS}, "heads")):
        if len(set(names)) != len(names):
            fail(key, f"names one twice, {_got(names)}")
        for i, name in enumerate(names):
            if name not in known:
                fail(f"{key}[{i}]", f"'{name}' is not one of {sorted(known)}")
            if name not in params.get(settings, {}):
                fail(f"{key}[{i}]", f"'{name}' has no settings in `{settings}`")


def check_features(features: Mapping) -> None:
    from galaxyprop.features.combined import is_combined, parts_of

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
                      f"{_got(value)}")


def check_registry(registry: Mapping, params: Mapping) -> None:
    from galaxyprop.heads import FEATURE_HEADS, IMAGE_HEADS, MULTIMODAL_HEADS
    from galaxyprop.registry.promotion import CalibrationRule

    features_params = params.get("features", {})
    compare = (set(features_params.get("compare") or []) | set(features_params.get("secondary") or [])
               | set(features_params.get("combined") or []) | set(FEATURE_SOURCES))
    end_to_end = {**IMAGE_HEADS, **MULTIMODAL_HEADS}
    for i, entry in enumerate(registry["candidate_heads"]):
        head, at, features = entry.partition("@")
        if head not in {**FEATURE_HEADS, **end_to_end}:
            fail(f"registry.candidate_heads[{i}]", f"names an unknown head '{head}'; known: "
                                                   f"{sorted({**FEATURE_HEADS, **end_to_end})}")
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


def check_spectra(spectra: Mapping, params: Mapping) -> None:
    """The spectrum heads and the feature sources they learn from; the served model takes the cutouts alone."""
    from galaxyprop.spectra.names import SPECTRUM_HEADS

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


def check_tuning(tuning: Mapping, params: Mapping) -> None:
    from galaxyprop.config import Stores
    from galaxyprop.tracking.tuning import check_workers, make_pruner

    reuse("tuning.pruner", lambda: make_pruner(tuning.get("pruner")))
    if tuning.get("workers", 1) > 1 and "stores" in params:     # the stores as the stages see them (env first)
        stores = Stores.from_params(params)
        reuse("tuning.workers", lambda: check_workers(tuning["workers"], stores.optuna_storage, stores.tracking_uri))


def check_calibration(calibration: Mapping) -> None:
    from galaxyprop.calibration.calibrator import CalibrationSettings

    if calibration.get("folds", 2) < 2:
        fail("calibration.folds", f"must be at least 2, {_got(calibration['folds'])}")
    reuse("calibration", lambda: CalibrationSettings.from_params(calibration))


def check_drift(drift: Mapping) -> None:
    from galaxyprop.monitoring.drift import DriftSettings

    reuse("drift.tests", lambda: DriftSettings.from_params(drift.get("tests") or {}))


def check_encoder(encoder: Mapping) -> None:
    from galaxyprop.encoder.devices import check_devices

    training = encoder.get("training") or {}
    if "devices" in training and "batch_size" in training:
        reuse("encoder.training.devices", lambda: check_devices(training["devices"], training["batch_size"]))


def check_mock(mock: Mapping) -> None:
    from galaxyprop.data.mock.config import MockConfig

    population = mock.get("population") or {}
    if population.get("z_min", 0) >= population.get("z_max", math.inf):
        fail("mock.population.z_min", f"must be below mock.population.z_max, {_got(population['z_min'])}")
    reuse("mock", lambda: MockConfig.from_params(mock))


#: section -> check of its relations (after the tables passed); `params` when it needs other sections
SECTIONS: dict[str, Callable] = {"data": check_data, "split": check_split, "targets": check_targets,
                                 "heads": check_heads, "features": check_features, "registry": check_registry,
                                 "tuning": check_tuning, "calibration": check_calibration, "drift": check_drift,
                                 "mock": check_mock, "train": check_train, "spectra": check_spectra,
                                 "encoder": check_encoder}
NEEDS_PARAMS = {"data", "registry", "train", "targets", "spectra", "tuning"}
#: the sections this module checks (others are accepted as they are)
VALIDATED_SECTIONS = sorted({p.split(".")[0] for p in TABLE})


def validate_params(params: Mapping) -> None:
    """Raise ParamsError, one line naming the dotted key, at the first value the pipeline cannot use."""
    if not isinstance(params, Mapping):
        raise ParamsError("params.yaml: expected a mapping of parameter groups")
    for name, value in params.items():
        if not isinstance(value, Mapping) and name in VALIDATED_SECTIONS:
            fail(name, f"must be a mapping, {_got(value)}")
    check_tables(params)
    for name, check in SECTIONS.items():
        if name in params:
            check(params[name], params) if name in NEEDS_PARAMS else check(params[name])
