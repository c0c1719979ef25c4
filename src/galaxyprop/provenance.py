"""Lineage facts for tags and caches: git commit, DVC hashes of data files, the source files a piece of code runs."""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
from pathlib import Path

from galaxyprop.config import load_yaml


def git_commit(cwd: str | Path = ".") -> str:
    """HEAD's commit, suffixed '-dirty' when tracked files (other than dvc.lock) have changes; 'unknown' outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)dvc.lock"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def file_digest(path: str | Path, algorithm: str = "md5") -> str:
    """Hex digest of a file's bytes, read a block at a time."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_md5(path: str | Path) -> str:
    """MD5 of a file's bytes, as DVC 3 records it for a single-file output."""
    return file_digest(path, "md5")


def dvc_lock_outputs(lock_path: str | Path = "dvc.lock") -> dict[str, str | None]:
    """Every output dvc.lock records (the stages' `outs`, metrics and plots) as its posix path, without a
    trailing slash, to its md5 (a file's, or a directory's '.dir' hash); empty without a dvc.lock."""
    lock_path = Path(lock_path)
    if not lock_path.exists():
        return {}
    stages = (load_yaml(lock_path.read_text()) or {}).get("stages") or {}
    return {Path(out["path"]).as_posix().rstrip("/"): out.get("md5")
            for stage in stages.values() for out in stage.get("outs", [])}


def dvc_output_hash(path: str | Path, lock_path: str | Path = "dvc.lock") -> str | None:
    """The md5 that dvc.lock records for output `path` (a file or a directory's '.dir' hash)."""
    return dvc_lock_outputs(lock_path).get(Path(path).as_posix().rstrip("/"))


def workspace_output_change(path: str | Path, root: str | Path = ".") -> str | None:
    """How the workspace copy of DVC output `path` differs from what dvc.lock records ('modified',
    'deleted', ...), or None when it matches."""
    from dvc.repo import Repo

    wanted = Path(path).as_posix().rstrip("/")
    with Repo(str(root)) as repo:
        status = repo.status(targets=[wanted])
    for entries in status.values():
        for entry in entries:
            if isinstance(entry, dict) and wanted in entry.get("changed outs", {}):
                return entry["changed outs"][wanted]
    return None


#: `galaxyprop.heads.knn:KNNHead`: an object named by string, imported when it is made (heads.FEATURE_HEADS).
_MODULE_STRING = re.compile(r"^galaxyprop(?:\.\w+)+:\w+$")
PACKAGE_ROOT = Path(__file__).resolve().parent


def _module_file(dotted: str) -> Path | None:
    """The source file of a galaxyprop module (`galaxyprop.heads.knn`), or None for a name in a module."""
    parts = dotted.split(".")[1:]
    base = PACKAGE_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_files(path: Path) -> set[Path]:
    """The project files `path` imports anywhere in it (lazy imports inside functions included), with
    the packages they run on the way (`galaxyprop/x/__init__.py`). Sibling modules of a script
    (`from common import ...` in pipelines/) count too; third-party imports do not."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.match(node.value):
            names.append(node.value.partition(":")[0])
    found: set[Path] = set()
    for name in names:
        if name.split(".")[0] == "galaxyprop":
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):   # every package on the way runs too
                module = _module_file(".".join(parts[:depth]))
                if module is not None:
                    found.add(module)
        elif (sibling := path.parent / f"{name.split('.')[0]}.py").is_file() and sibling != path:
            found.add(sibling.resolve())
    return found


def import_closure(*entry_points: str | Path) -> list[Path]:
    """Every project source file that running `entry_points` can execute: the scripts themselves and
    the transitive closure of their imports of galaxyprop (and of their sibling modules), sorted."""
    todo = [Path(p).resolve() for p in entry_points]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += sorted(_imported_files(path) - seen)
    return sorted(seen)


def code_digest(*entry_points: str | Path) -> str:
    """SHA-256 over the source of the modules (`galaxyprop.heads.knn`) or files given and of every
    project module they import, by relative path and bytes: it changes exactly when that code does."""
    files = []
    for entry in entry_points:
        path = _module_file(entry) if isinstance(entry, str) and entry.startswith("galaxyprop.") else Path(entry)
        if path is None or not path.is_file():
            raise ValueError(f"no galaxyprop module or source file {entry}")
        files.append(path)
    digest = hashlib.sha256()
    for path in import_closure(*files):
        name = path.relative_to(PACKAGE_ROOT.parent) if path.is_relative_to(PACKAGE_ROOT.parent) else path.name
        digest.update(Path(name).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
