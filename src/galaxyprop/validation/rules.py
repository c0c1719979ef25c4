"""The generic machinery of params checking: rule names, the `Schema` a package declares for the
sections it reads, and `validate`, which runs the schemas it is given over the loaded params.

A schema maps dotted keys (`*`: any key at that level) to a rule name (`RULES`); a trailing `?`
lets the value be null. Keys a section lacks are not checked unless listed in `required`; unknown
keys are accepted, except in the `closed` sections. Relations between values (and with other
sections) are a schema's `checks`, run after every table passed. Where a parser already validates
a group, a check calls it through `reuse`, which re-raises its error under the group's key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from galaxyprop.config import GROUP_FILES, locate
from galaxyprop.errors import GalaxypropError


class ParamsError(GalaxypropError):
    """A value of params.yaml that the pipeline cannot use, named by its dotted key."""


def is_int(v) -> bool:
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
    "int": (is_int, "an integer"),
    "count": (lambda v: is_int(v) and v >= 1, "a positive integer"),
    "natural": (lambda v: is_int(v) and v >= 0, "a non-negative integer"),
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

#: a check of one section's relations: (the section's value, the whole params)
Check = Callable[[Mapping, Mapping], None]


@dataclass(frozen=True)
class Schema:
    """The rules of the params sections one package reads, declared beside its code (as scikit-learn
    keeps `_parameter_constraints` beside `__init__`). `rules`: dotted key -> rule name; `required`:
    keys a present node must have; `closed`: nodes whose unknown keys are errors; `checks`: section ->
    check of its relations, run when the section is present."""

    rules: Mapping[str, str] = field(default_factory=dict)
    required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    closed: Mapping[str, set[str]] = field(default_factory=dict)
    checks: Mapping[str, Check] = field(default_factory=dict)

    @property
    def sections(self) -> set[str]:
        return {k.split(".")[0] for k in (*self.rules, *self.required, *self.closed, *self.checks)}


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


def got(value) -> str:
    return f"got {value!r}"


def check_rule(key: str, value, rule: str) -> None:
    optional = rule.endswith("?")
    if optional and value is None:
        return
    test, what = RULES[rule.rstrip("?")]
    if not test(value):
        fail(key, f"must be {what}{' or null' if optional else ''}, {got(value)}")


def walk(node, pattern: list[str], path: list[str]):
    """(dotted key, value) of every key of `node` matching `pattern` (`*`: any key)."""
    if not pattern:
        yield ".".join(path), node
        return
    if not isinstance(node, Mapping):
        return
    head, rest = pattern[0], pattern[1:]
    for key in (list(node) if head == "*" else [head] if head in node else []):
        yield from walk(node[key], rest, [*path, str(key)])


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


def _seeds(node, prefix: str):
    if isinstance(node, Mapping):
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if key == "seed" and not isinstance(value, Mapping):
                yield dotted, value
            yield from _seeds(value, dotted + ".")


def _check_tables(params: Mapping, schema: Schema) -> None:
    for pattern, keys in schema.required.items():
        for key, node in walk(params, pattern.split("."), []):
            if isinstance(node, Mapping):
                for name in keys:
                    if name not in node:
                        fail(f"{key}.{name}", "is missing")
    for pattern, known in schema.closed.items():
        for key, node in walk(params, pattern.split("."), []):
            unknown = sorted(set(node) - known) if isinstance(node, Mapping) else []
            if unknown:
                fail(key, f"has unknown keys {unknown}; known: {sorted(known)}")
    for pattern, rule in schema.rules.items():
        for key, value in walk(params, pattern.split("."), []):
            check_rule(key, value, rule)


def validate(params: Mapping, schemas: Iterable[Schema]) -> None:
    """Raise ParamsError, one line naming the dotted key, at the first value the pipeline cannot use
    under `schemas` (every seed must be an integer whatever the schemas)."""
    schemas = list(schemas)
    if not isinstance(params, Mapping):
        raise ParamsError("params.yaml: expected a mapping of parameter groups")
    sections = set().union(*(s.sections for s in schemas)) if schemas else set()
    for name, value in params.items():
        if not isinstance(value, Mapping) and name in sections:
            fail(name, f"must be a mapping, {got(value)}")
    for schema in schemas:
        _check_tables(params, schema)
    for key, value in _seeds(params, ""):
        check_rule(key, value, "int")
    for schema in schemas:
        for name, check in schema.checks.items():
            if name in params:
                check(params[name], params)
