"""Keep every dvc.yaml stage's code dependencies equal to the code it runs.

A stage's code is the import closure of its script (`galaxyprop.provenance.import_closure`):
the script, its sibling modules in pipelines/, every galaxyprop module it or they import (lazily
imported ones and heads named by string included) and the packages on the way. Folders whose
Python files are all in the closure are declared as the folder. `register` bundles the whole
package into each registered model, so it declares `src/galaxyprop`.

    python tools/stage_deps.py           # list the stages whose declared code differs
    python tools/stage_deps.py --write   # rewrite those deps in dvc.yaml (comments kept)
    python tools/stage_deps.py --prune-lock   # drop dvc.lock entries of stages dvc.yaml no longer has

tests/test_stage_deps.py fails while any stage's declared code differs from its closure.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))

from galaxyprop.provenance import import_closure  # noqa: E402

CODE_PREFIXES = ("pipelines/", "src/")
#: Stages that run more than their imports: register logs the whole package as each model's code.
WHOLE_PACKAGE = {"register": "src/galaxyprop"}


def script_of(stage: dict) -> str:
    """`pipelines/train.py` from `python pipelines/train.py --head ...`."""
    words = shlex.split(stage["cmd"])
    return next(w for w in words if w.endswith(".py"))


def _python_files(folder: Path) -> set[str]:
    return {p.relative_to(PROJECT).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def minimal_cover(files: set[str]) -> list[str]:
    """`files` with every folder whose Python files are all in `files` written as the folder."""
    cover = set(files)
    folders = sorted({Path(f).parent for f in files}, key=lambda p: -len(p.parts))
    for folder in folders:
        while folder.as_posix() not in ("src", "pipelines", "."):
            inside = _python_files(PROJECT / folder)
            if not inside or not inside <= files:
                break
            cover = {c for c in cover if not c.startswith(folder.as_posix() + "/")} | {folder.as_posix()}
            folder = folder.parent
    return sorted(cover)


def stage_code(name: str, stage: dict) -> list[str]:
    """The code deps stage `name` must declare."""
    files = {p.relative_to(PROJECT).as_posix() for p in import_closure(PROJECT / script_of(stage))}
    if name in WHOLE_PACKAGE:
        whole = WHOLE_PACKAGE[name]
        files = {f for f in files if not f.startswith(whole + "/")} | _python_files(PROJECT / whole)
    return minimal_cover(files)


def declared_code(stage: dict) -> list[str]:
    return [d for d in stage.get("deps", []) if isinstance(d, str) and d.startswith(CODE_PREFIXES)]


def differences(stages: dict) -> dict[str, tuple[list[str], list[str]]]:
    """Stage -> (undeclared code it runs, declared code it does not run)."""
    out = {}
    for name, stage in stages.items():
        want, have = stage_code(name, stage), declared_code(stage)
        if want != sorted(have):
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
    yaml.width = 4096
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
    if args.write and found:
        with path.open("w") as handle:
            yaml.dump(document, handle)
    return 1 if found and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
