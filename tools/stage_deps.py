"""Keep every dvc.yaml stage's code dependencies equal to the code it runs, at the granularity of the
layering: a package folder where the stage runs all of it, a file where it runs one file.

A stage's code is the import closure of its script (`galaxyprop.provenance.import_closure`): the
script, its sibling modules in pipelines/, every galaxyprop module it or they import (lazily imported
ones included) and the packages on the way. A stage whose matrix runs heads by name
(`--head ${item.head}`) declares, besides what every item runs, its own head's package
`src/galaxyprop/heads/${item.head}`, so that an edit to one head reruns only that head's stages.
Stages that run heads they do not import (unpickled models: register, drift) declare
`src/galaxyprop/heads`. Folders whose Python files are all in the closure are declared as the folder.

    python tools/stage_deps.py           # list the stages whose declared code differs
    python tools/stage_deps.py --write   # rewrite those deps in dvc.yaml (comments kept)
    python tools/stage_deps.py --prune-lock   # drop dvc.lock entries of stages dvc.yaml no longer has

tests/test_stage_deps.py fails while any stage's declared code differs from its closure.
"""

from __future__ import annotations

import argparse
import io
import shlex
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from galaxyprop.provenance import import_closure  # noqa: E402

CODE_PREFIXES = ("pipelines/", "src/")
HEADS = "src/galaxyprop/heads"
#: Stages that run heads they do not import: they load trained models, whose heads are named in the pickles.
RUNS_ANY_HEAD = {"register", "drift"}
#: The template a head-matrix stage declares for the head it trains (each head is a package of heads/).
HEAD_TEMPLATE = HEADS + "/${item.head}"
#: Which heads a matrix list of params may name (the stage's items are any of them).
MATRIX_HEADS = {"${train.feature_heads}": "FEATURE_HEADS", "${train.image_heads}": ("IMAGE_HEADS", "MULTIMODAL_HEADS")}


def script_of(stage: dict) -> str:
    """`pipelines/train.py` from `python pipelines/train.py --head ...`."""
    words = shlex.split(stage["cmd"])
    return next(w for w in words if w.endswith(".py"))


def _python_files(folder: Path) -> set[str]:
    return {p.relative_to(PROJECT).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def minimal_cover(files: set[str]) -> list[str]:
    """`files` with every package folder the stage uses written as the folder, unless one of its
    subpackages is unused (then its used files and subpackages are written): the granularity of the
    layering. The heads package is written whole only where every head runs; elsewhere its shared
    modules are files and each head its own package (declared by the stages that train it)."""
    cover = set(files)
    folders = sorted({p for f in files for p in Path(f).parents if p.as_posix() not in ("", ".")},
                     key=lambda p: -len(p.parts))
    for folder in folders:
        name = folder.as_posix()
        inside = _python_files(PROJECT / folder)
        if name in ("src", "src/galaxyprop", "pipelines") or (name == HEADS and inside - files):
            continue
        unused_packages = [sub for sub in (PROJECT / folder).iterdir()
                           if sub.is_dir() and _python_files(sub) and not _python_files(sub) & files]
        if inside & files and not unused_packages:
            cover = {c for c in cover if not c.startswith(name + "/")} | {name}
    return sorted(cover)


def _closure(*paths: Path) -> set[str]:
    return {p.relative_to(PROJECT).as_posix() for p in import_closure(*paths)}


def matrix_heads(stage: dict) -> list[str]:
    """The heads a `--head ${item.head}` matrix stage may train (every head its params list may name)."""
    import galaxyprop.heads as heads

    if "${item.head}" not in stage["cmd"]:
        return []
    tables = MATRIX_HEADS[stage["matrix"]["head"]]
    return sorted(h for table in ([tables] if isinstance(tables, str) else tables) for h in getattr(heads, table))


def stage_code(name: str, stage: dict) -> list[str]:
    """The code deps stage `name` must declare."""
    files = _closure(PROJECT / script_of(stage))
    if name in RUNS_ANY_HEAD:
        files |= _python_files(PROJECT / HEADS) | _closure(*(PROJECT / HEADS).rglob("*.py"))
    heads = matrix_heads(stage)
    if not heads:
        return minimal_cover(files)
    for head in heads:   # what each head runs, but its own package (the template's)
        own = HEADS + "/" + head
        files |= {f for f in _closure(PROJECT / own / "__init__.py") if not f.startswith(own + "/")}
    return [*minimal_cover(files), HEAD_TEMPLATE]


def declared_code(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith(CODE_PREFIXES)]


def differences(stages: dict) -> dict[str, tuple[list[str], list[str]]]:
    """Stage -> (undeclared code it runs, declared code it does not run)."""
    out = {}
    for name, stage in stages.items():
        want, have = stage_code(name, stage), declared_code(stage)
        if sorted(want) != sorted(have):
            out[name] = (sorted(set(want) - set(have)), sorted(set(have) - set(want)))
    return out


def prune_lock() -> None:
    """Remove the dvc.lock entries of stages that dvc.yaml no longer defines (renamed or deleted):
    `dvc repro` rewrites the entries of the stages it runs and keeps every other one."""
    from dvc.repo import Repo
    from ruamel.yaml import YAML

    with Repo(str(PROJECT)) as repo:
        names = {stage.addressing for stage in repo.index.stages}
    yaml = YAML()
    yaml.width = 4096
    path = PROJECT / "dvc.lock"
    lock = yaml.load(path.read_text())
    orphans = [name for name in lock["stages"] if name not in names]
    for name in orphans:
        del lock["stages"][name]
    if orphans:
        with path.open("w") as handle:
            yaml.dump(lock, handle)
    print(f"dvc.lock: removed {len(orphans)} entries of stages dvc.yaml no longer has {orphans}")


def _aligned(text: str) -> str:
    """dvc.yaml as ruamel wrote it, with each wrapped `deps: [...]` list's lines aligned under its first
    entry and no trailing spaces."""
    lines, indent = [], None
    for line in text.splitlines():
        line = line.rstrip()
        if indent is not None:
            line = " " * indent + line.lstrip()
        elif line.lstrip().startswith("deps: ["):
            indent = line.index("[") + 1
        if indent is not None and line.partition(" #")[0].rstrip().endswith("]"):
            indent = None
        lines.append(line)
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the code deps in dvc.yaml")
    parser.add_argument("--prune-lock", action="store_true", help="drop dvc.lock entries of removed stages")
    args = parser.parse_args()
    if args.prune_lock:
        prune_lock()
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 118
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = PROJECT / "dvc.yaml"
    document = yaml.load(path.read_text())
    found = differences(document["stages"])
    for name, (missing, extra) in found.items():
        print(f"{name}: undeclared {missing or '-'}; declared but not run {extra or '-'}")
        if args.write:
            deps = document["stages"][name]["deps"]
            data = [d for d in deps if not (isinstance(d, str) and d.startswith(CODE_PREFIXES))]
            deps.clear()
            deps.extend(stage_code(name, document["stages"][name]) + data)
    if args.write:
        for stage in document["stages"].values():   # code then data, wrapped: a stage reads in a few lines
            stage["deps"].fa.set_flow_style()
    if args.write:
        text = io.StringIO()
        yaml.dump(document, text)
        path.write_text(_aligned(text.getvalue()))
    return 1 if found and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
