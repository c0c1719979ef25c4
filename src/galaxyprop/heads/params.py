"""The schemas of the sections about heads: `heads` (each head's search space and fixed settings),
`train` (which heads the train stages run on which targets), the heads a target names
(`targets.<t>.n_trials`), `baselines` (the kcorrect fits) and `adaptation` (the domain-adversarial MLP)."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.heads import ALL_HEADS, FEATURE_HEADS, IMAGE_HEADS, MULTIMODAL_HEADS
from galaxyprop.validation.rules import Schema, check_rule, fail, got, is_int

#: hyperparameters the heads take as integers (fixed values, choices and range bounds alike)
INT_HYPERPARAMETERS = {"k", "max_leaf_nodes", "min_samples_leaf", "max_iter", "seed", "hidden_layers", "width",
                       "batch_size", "max_epochs", "patience", "n_mc", "latent_dim", "k_min", "k_max",
                       "n_calibration", "recalibration_degree", "projection_width", "projection_layers",
                       "refit_width", "refit_layers", "n_realisations", "channels", "crop", "max_shift",
                       "photometry_layers", "photometry_width", "photometry_epochs",
                       # RAIL's estimators (heads.rail_*)
                       "max_basis", "nbump", "nsharp", "n_basis", "max_attempt", "selection_mode", "min_n",
                       "leaf_size", "nneigh_min", "nneigh_max", "ngrid_sigma"}
STR_HYPERPARAMETERS = {"weights": ("uniform", "distance"), "scaling": ("standard", "robust", "none")}


def check_hyperparameter(key: str, name: str, value) -> None:
    if isinstance(value, (Mapping, list)) or (value is not None and not isinstance(value, (bool, int, float, str))):
        fail(key, f"must be a number, string, true/false or null, {got(value)}")
    if name in INT_HYPERPARAMETERS and not is_int(value):
        fail(key, f"must be an integer, {got(value)}")
    if name in STR_HYPERPARAMETERS and value not in STR_HYPERPARAMETERS[name]:
        fail(key, f"must be one of {list(STR_HYPERPARAMETERS[name])}, {got(value)}")


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
                fail(f"{where}.low", f"must be positive on a log range, {got(spec['low'])}")
        else:
            fail(where, f"is a fixed value ({spec!r}): searched settings are a list of choices or a range "
                        f"{{low, high, log?}}; put fixed ones in {key.rpartition('.')[0]}.fixed")


def _check_heads(heads: Mapping, params: Mapping) -> None:
    for name, spec in heads.items():
        if name not in ALL_HEADS:
            fail("heads", f"names an unknown head '{name}'; known: {sorted(ALL_HEADS)}")
        check_search(f"heads.{name}.search", spec["search"], spec.get("fixed") or {})


def _check_train(train: Mapping, params: Mapping) -> None:
    """The lists the train stages' matrices run: each name has its settings in `targets` / `heads`."""
    for key, names, known, settings in (("train.targets", train["targets"], params.get("targets", {}), "targets"),
                                        ("train.feature_heads", train["feature_heads"], FEATURE_HEADS, "heads"),
                                        ("train.secondary_heads", train.get("secondary_heads") or [], FEATURE_HEADS,
                                         "heads"),
                                        ("train.image_heads", train.get("image_heads") or [],
                                         {**IMAGE_HEADS, **MULTIMODAL_HEADS}, "heads")):
        if len(set(names)) != len(names):
            fail(key, f"names one twice, {got(names)}")
        for i, name in enumerate(names):
            if name not in known:
                fail(f"{key}[{i}]", f"'{name}' is not one of {sorted(known)}")
            if name not in params.get(settings, {}):
                fail(f"{key}[{i}]", f"'{name}' has no settings in `{settings}`")


def _check_target_heads(targets: Mapping, params: Mapping) -> None:
    for name, spec in targets.items():
        for head in (spec.get("n_trials") if isinstance(spec, Mapping) else None) or {}:
            if head not in ALL_HEADS:
                fail(f"targets.{name}.n_trials", f"names an unknown head '{head}'; known: {sorted(ALL_HEADS)}")


#: `heads` (their objective, a metric name, is checked by evaluation.params) and the heads a target names
HEADS_SCHEMA = Schema(
    rules={"heads": "map", "heads.*": "map", "heads.*.n_trials": "count", "heads.*.search": "map",
           "heads.*.fixed": "map?", "heads.*.objective": "str"},
    required={"heads.*": ("n_trials", "search")},
    checks={"heads": _check_heads, "targets": _check_target_heads})

#: `train`: the lists the train stages' matrices run
TRAIN_SCHEMA = Schema(
    rules={"train.targets": "strs", "train.feature_heads": "strs", "train.image_heads": "names",
           "train.secondary_heads": "strs?"},
    required={"train": ("targets", "feature_heads")},
    checks={"train": _check_train})

BASELINES_SCHEMA = Schema(
    rules={"baselines.*": "map", "baselines.*.bands": "strs?", "baselines.*.n_mc": "count", "baselines.*.seed": "int",
           "baselines.*.redshift_from": "str", "baselines.*.features": "strs?"})

_ADVERSARIAL_MLP = {"hidden_layers": "natural", "width": "count", "dropout": "prob", "learning_rate": "positive",
                    "weight_decay": "nonneg", "batch_size": "count", "max_epochs": "count", "n_mc": "count",
                    "seed": "int"}
ADAPTATION_SCHEMA = Schema(
    rules={"adaptation.targets": "strs?", "adaptation.adversary_weight": "nonneg",
           "adaptation.discriminator_speed": "positive", "adaptation.mlp": "map",
           **{f"adaptation.mlp.{k}": rule for k, rule in _ADVERSARIAL_MLP.items()}},
    required={"adaptation": ("mlp",)})
