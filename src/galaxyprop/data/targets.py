"""What a target is: a name in params `targets` with the catalogue column it is read from.

A target's settings (`targets.<name>` in params.yaml) give its metric, density grid and, here, where
its values come from: `column` (the FastSpecFit name for DESI-like sources), optionally `log10` (take
the logarithm) and `subtract` (a column subtracted afterwards: log sSFR = log10 SFR - LOGMSTAR). A
data source may override the column map per target (`data.sources.<name>.targets.<target>`: a column,
a mapping like the one in params, or null where the source does not have the target); a catalogue
source (`kind: catalog`) has only the targets it names, plus `z` (its redshift column) and, with a
`label` section, `kcorr_r01` (kcorrect fitted on its bands). `kcorrect:logmstar` names the stellar
mass of that same kcorrect fit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError
from galaxyprop.validation.rules import Schema, fail, got, reuse

KCORRECT = "kcorrect:"
#: What a catalogue source's kcorrect reference fit (its `label` section) gives, by `kcorrect:<name>`.
KCORRECT_QUANTITIES = ("kcorrection", "logmstar")
#: The target a catalogue source's `label` section gives when the source does not name it.
LABEL_TARGET = "kcorr_r01"
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def is_name(name) -> bool:
    """Target names become file names, registered model names and CLI arguments: lower-case words."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(name: str, where: str) -> None:
    if not is_name(name):
        raise GalaxypropError(f"{where}: target name {name!r} must be lower-case letters, digits and _ "
                              "(starting with a letter)")


@dataclass(frozen=True)
class TargetColumn:
    """Where one target's values come from in a source's catalogue."""

    name: str
    column: str
    log10: bool = False
    subtract: str | None = None

    @classmethod
    def from_spec(cls, name: str, spec, where: str) -> TargetColumn:
        if isinstance(spec, str):
            spec = {"column": spec}
        if not isinstance(spec, Mapping) or not isinstance(spec.get("column"), str):
            raise GalaxypropError(f"{where}: give the column of target '{name}' (a name, or {{column, log10, "
                                  f"subtract}}), got {spec!r}")
        unknown = set(spec) - {"column", "log10", "subtract"}
        if unknown:
            raise GalaxypropError(f"{where}: unknown keys {sorted(unknown)} (column, log10, subtract)")
        column = spec["column"]
        if column.startswith(KCORRECT) and column[len(KCORRECT):] not in KCORRECT_QUANTITIES:
            raise GalaxypropError(f"{where}: '{column}' is not one of "
                                  f"{[KCORRECT + q for q in KCORRECT_QUANTITIES]}")
        return cls(name, column, bool(spec.get("log10", False)), spec.get("subtract"))

    @property
    def from_kcorrect(self) -> str | None:
        """The kcorrect quantity this target is (`kcorrection`, `logmstar`), or None for a file column."""
        return self.column[len(KCORRECT):] if self.column.startswith(KCORRECT) else None

    @property
    def file_columns(self) -> list[str]:
        return [c for c in (self.column, self.subtract) if c and not c.startswith(KCORRECT)]

    def values(self, get: Callable[[str], np.ndarray]) -> np.ndarray:
        """The target of every row from `get(column) -> values` (NaN where it cannot be computed)."""
        values = np.asarray(get(self.column), dtype=float)
        if self.log10:
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)), np.nan)
        if self.subtract:
            values = values - np.asarray(get(self.subtract), dtype=float)
        return values

    def describe(self) -> str:
        text = f"log10({self.column})" if self.log10 else self.column
        return f"{text} - {self.subtract}" if self.subtract else text


def column_key(source_name: str, source: Mapping, target: TargetColumn, file_column: str) -> str:
    """The params key that names `file_column` for `target`: the source's own `targets.<t>` entry, or the
    target's `column` / `subtract` (how check_params points at a column a file lacks)."""
    if target.name in (source.get("targets") or {}):
        return f"data.sources.{source_name}.targets.{target.name}"
    return f"targets.{target.name}.{'column' if file_column == target.column else 'subtract'}"


def target_columns(targets: Mapping, source_name: str, source: Mapping,
                   names: list[str]) -> dict[str, TargetColumn]:
    """The column of each of `names` (but the redshift, which every source has) in this source;
    targets the source does not have are left out."""
    own = source.get("targets") or {}
    if not isinstance(own, Mapping):
        raise GalaxypropError(f"params data.sources.{source_name}.targets must map target names to columns")
    for name in own:
        if name not in targets:
            raise GalaxypropError(f"params data.sources.{source_name}.targets names '{name}', which is not a "
                                  f"target in params targets ({sorted(targets)})")
    columns = {}
    for name in names:
        if name == schema.REDSHIFT:
            continue
        if name not in targets:
            raise GalaxypropError(f"target '{name}' has no settings in params targets ({sorted(targets)})")
        where = f"params data.sources.{source_name}.targets.{name}"
        if name in own:
            spec = own[name]
        elif source.get("kind") == "catalog":
            spec = KCORRECT + "kcorrection" if name == LABEL_TARGET and source.get("label") else None
        elif targets[name].get("column") is None:
            spec = None
        else:
            spec = {k: targets[name][k] for k in ("column", "log10", "subtract") if k in targets[name]}
            where = f"params targets.{name}"
        if spec is not None:
            columns[name] = TargetColumn.from_spec(name, spec, where)
    return columns


def target_names(targets: Mapping) -> list[str]:
    """The names of `targets` (params `targets`, given by the caller: library code never reads params.yaml)."""
    return sorted(targets)


def _check_targets(targets: Mapping, params: Mapping) -> None:
    if schema.REDSHIFT not in targets:
        fail(f"targets.{schema.REDSHIFT}", "is missing (the redshift: the kcorrect baselines and drift read it)")
    for name, spec in targets.items():
        reuse("targets", lambda name=name: check_name(name, "params targets"))
        if name != schema.REDSHIFT and spec.get("column") is not None:
            reuse(f"targets.{name}", lambda name=name, spec=spec: TargetColumn.from_spec(
                name, {k: spec[k] for k in ("column", "log10", "subtract") if k in spec}, f"params targets.{name}"))
        grid = spec["grid"]
        if grid["low"] >= grid["high"]:
            fail(f"targets.{name}.grid", f"needs low < high, got low {grid['low']}, high {grid['high']}")
        if grid["n_bins"] < 2:
            fail(f"targets.{name}.grid.n_bins", f"must be at least 2, {got(grid['n_bins'])}")


#: params `targets`: each target's column, grid and scoring (its metric is checked by evaluation.params, its
#: n_trials by heads.params, its features by features.params: each by the package that owns those names)
TARGETS_SCHEMA = Schema(
    rules={"targets.*": "map", "targets.*.metric": "str", "targets.*.outlier_threshold": "positive",
           "targets.*.grid": "map", "targets.*.grid.low": "number", "targets.*.grid.high": "number",
           "targets.*.grid.n_bins": "count", "targets.*.column": "str?", "targets.*.log10": "bool",
           "targets.*.subtract": "str?", "targets.*.description": "str", "targets.*.unit": "str", "targets.*.n_trials": "map?",
           "targets.*.n_trials.*": "count", "targets.*.features": "strs?"},
    required={"targets.*": ("metric", "outlier_threshold", "grid"), "targets.*.grid": ("low", "high", "n_bins")},
    checks={"targets": _check_targets})
