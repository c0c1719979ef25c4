"""Where a user's command may write: never into the project's stores (MLflow's and Optuna's sqlite files
and the artifact folder), never over the pipeline's outputs (every `outs` path dvc.lock records) unless
the user says `--force`, and never to a path that cannot be a file. Each refusal is one line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

from galaxyprop.config import Stores
from galaxyprop.errors import GalaxypropError


def store_folders(stores: Stores) -> list[Path]:
    """The local folders holding the stores: each sqlite database's folder and the artifact root."""
    folders = [Path(uri.removeprefix("sqlite:///")).resolve().parent
               for uri in (stores.tracking_uri, stores.optuna_storage) if uri.startswith("sqlite:///")]
    if stores.artifact_location and stores.artifact_location.startswith("file:"):
        folders.append(Path(unquote(urlparse(stores.artifact_location).path)).resolve())
    return folders


def pipeline_outputs(lock: Path = Path("dvc.lock")) -> list[Path]:
    """Every output path dvc.lock records (the stages' `outs`, metrics and plots)."""
    from galaxyprop.provenance import dvc_lock_outputs

    return [Path(path).resolve() for path in dvc_lock_outputs(lock)]


def _inside(path: Path, folders: Iterable[Path]) -> Path | None:
    return next((f for f in folders if path == f or f in path.parents), None)


def check_output(path: str | None, option: str, stores: Stores, force: bool = False, folder: bool = False,
                 lock: Path = Path("dvc.lock")) -> Path:
    """`path` as the file (`folder`: the folder) a command may write, or one line saying why not."""
    if path is None or not str(path).strip():
        raise GalaxypropError(f"{option}: an empty path; name the {'folder' if folder else 'file'} to write")
    given = Path(path)
    if not folder and (str(path).endswith("/") or given.is_dir()):
        raise GalaxypropError(f"{option} {path}: a folder; name the file to write")
    if folder and given.exists() and not given.is_dir():
        raise GalaxypropError(f"{option} {path}: an existing file; name a folder for the report")
    target = given.resolve()
    store = _inside(target, store_folders(stores))
    if store is not None:
        raise GalaxypropError(f"{option} {path}: inside the project's stores ({store}); galaxyprop never writes a "
                              "user's output there: choose another path")
    output = _inside(target, pipeline_outputs(lock))
    if output is not None and not force:
        raise GalaxypropError(f"{option} {path}: inside the pipeline's output {output.relative_to(Path.cwd().resolve())} "
                              "(dvc.lock), which `dvc repro` owns: choose another path, or --force to overwrite it")
    return given
