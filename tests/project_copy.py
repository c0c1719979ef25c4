"""A clean copy of the project in a new git repository: what the integration test and the benchmarks run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
_GENERATED = ("data/", "models/", "reports/", "dvc.lock")


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` with this interpreter's environment first on PATH and no store overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "GALAXYPROP_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def copy_project(root: Path) -> Path:
    """Copy the tracked and new source files (no generated data, models, reports or lock) and commit them."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], PROJECT).stdout.split()
    for name in files:
        if (PROJECT / name).is_file() and not name.startswith(_GENERATED):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, root / name)
    git = ["git", "-c", "user.name=galaxyprop", "-c", "user.email=dev@localhost"]
    run(["git", "init", "-q"], root)
    run(git + ["add", "-A"], root)
    run(git + ["commit", "-qm", "copy"], root)
    return root
