"""The schemas of params `data` (which source feeds the pipeline, and every source's files and column
map in sources.yaml) and `split`."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.validation.rules import Schema, check_rule, fail, got, reuse


def _check_data(data: Mapping, params: Mapping) -> None:
    from galaxyprop.data.catalog import CatalogSpec
    from galaxyprop.data.sources import KINDS, source_files, split_of
    from galaxyprop.data.targets import target_columns

    sources = data["sources"]
    if data["source"] not in sources:
        fail("data.source", f"must be one of data.sources {sorted(sources)}, {got(data['source'])}")
    if data.get("z_max") is not None and data.get("z_min", 0.0) >= data["z_max"]:
        fail("data.z_min", f"must be below data.z_max ({data['z_max']}), {got(data.get('z_min', 0.0))}")
    for name, spec in sources.items():
        key = f"data.sources.{name}"
        if spec.get("kind") not in KINDS:
            fail(f"{key}.kind", f"must be one of {list(KINDS)}, {got(spec.get('kind'))}")
        reuse(key, lambda name=name, spec=spec: split_of(name, spec))
        if name == data["source"]:
            reuse(key, lambda name=name, spec=spec: source_files(name, spec))
            _check_target_columns(name, spec, params)
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


def _check_target_columns(name: str, spec: Mapping, params: Mapping) -> None:
    """Each target the pipeline trains reads a column the selected source's files have (their headers)."""
    from galaxyprop.data.sources import absent_target_columns
    from galaxyprop.data.targets import column_key, target_columns
    from galaxyprop.errors import GalaxypropError

    try:
        columns = target_columns(params.get("targets") or {}, name, spec,
                                 list((params.get("train") or {}).get("targets") or []))
    except GalaxypropError:
        return          # an unknown or malformed target: the targets' own schema names it
    key = f"data.sources.{name}"
    absent = []
    reuse(key, lambda: absent.extend(absent_target_columns(name, spec, columns)))
    for target, column, path, have in absent[:1]:
        shown = ", ".join(have[:20]) + (f", ... ({len(have)} columns)" if len(have) > 20 else "")
        fail(column_key(name, spec, columns[target], column), f"names '{column}', which {path} lacks (it has {shown})")


def _check_split(split: Mapping, params: Mapping) -> None:
    fractions = split["fractions"]
    missing = sorted({"train", "val", "test"} - set(fractions))
    if missing:
        fail("split.fractions", f"needs train, val and test, missing {missing}")
    for name, value in fractions.items():
        check_rule(f"split.fractions.{name}", value, "prob")
    total = sum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        fail("split.fractions", f"must sum to 1, got {total:.6g} ({dict(fractions)})")


DATA_SCHEMA = Schema(
    rules={"data.source": "str", "data.max_rows": "count?", "data.seed": "int", "data.z_min": "number",
           "data.z_max": "number?", "data.sources": "map", "data.sources.*": "map",
           "data.sources.*.required_bands": "strs", "data.sources.*.images": "str", "data.sources.*.catalog": "str",
           "data.sources.*.path": "str", "data.sources.*.targets": "map?"},
    required={"data": ("source", "sources")},
    checks={"data": _check_data})

SPLIT_SCHEMA = Schema(
    rules={"split.fractions": "map", "split.seed": "int", "split.n_redshift_bins": "count",
           "split.n_brightness_bins": "count", "split.by_field": "bool"},
    required={"split": ("fractions", "seed")},
    closed={"split": {"fractions", "seed", "n_redshift_bins", "n_brightness_bins", "by_field"},
            "split.fractions": {"train", "val", "test"}},
    checks={"split": _check_split})
