"""Lineage facts for tags: git commit, DVC hashes of data files."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml


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


def dvc_output_hash(path: str | Path, lock_path: str | Path = "dvc.lock") -> str | None:
    """The md5 that dvc.lock records for output `path` (a file or a directory's '.dir' hash)."""
    lock_path = Path(lock_path)
    if not lock_path.exists():
        return None
    lock = yaml.safe_load(lock_path.read_text()) or {}
    wanted = Path(path).as_posix().rstrip("/")
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs", []):
            if Path(out["path"]).as_posix().rstrip("/") == wanted:
                return out.get("md5")
    return None


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
