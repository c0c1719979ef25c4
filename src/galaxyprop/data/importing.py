"""Bring the selected data source's files into data/raw: copies of the real files, or the mock survey
simulated (the only module of `data` that runs the mock, so that the stages reading the imported files
do not depend on the simulator's code)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from galaxyprop.data.io import atomic_path
from galaxyprop.data.sources import MOCK, resolve_path, source_files, source_spec, source_split
from galaxyprop.errors import GalaxypropError
from galaxyprop.workspace import FASTSPEC_FILE, IMAGES_DIR, IMAGES_FILE


def _copy(source: str, target: Path) -> None:
    path = resolve_path(source)
    if not path.is_file():
        raise GalaxypropError(f"{path}: source file not found (params data.sources)")
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)


def _copy_images(source: str, raw: Path) -> list[Path]:
    """HDF5 (flat or grouped) -> raw/astroclip.h5; Parquet shards -> raw/astroclip/<shard names>."""
    from galaxyprop.data.astroclip.layout import is_parquet_source
    from galaxyprop.data.astroclip.parquet import shard_paths

    path = resolve_path(source)
    if not is_parquet_source(path):
        _copy(source, raw / IMAGES_FILE)
        return [raw / IMAGES_FILE]
    shards = shard_paths(path)
    target = raw / IMAGES_DIR
    tmp = raw / f".{IMAGES_DIR}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for file, name in shards:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, tmp / name)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [target / name for _, name in shards]


def import_source(data: Mapping, mock: Mapping | None, raw: Path, progress: bool = True) -> list[Path]:
    """Bring the selected source's files into `raw` (simulating the mock survey); returns them."""
    name, spec = source_spec(data)
    source_files(name, spec)              # every file is there before the old import is replaced
    if raw.exists():
        shutil.rmtree(raw)
    raw.mkdir(parents=True)
    if spec["kind"] == "catalog":
        parts = {"": spec["path"]} if "path" in spec else {f"_{k}": spec["paths"][k] for k in ("train", "test")}
        targets = []
        for part, path in parts.items():
            targets.append(raw / f"catalog{part}{''.join(resolve_path(str(path)).suffixes) or '.fits'}")
            _copy(str(path), targets[-1])
        return targets
    source_split(data)
    images, catalog = raw / IMAGES_FILE, raw / FASTSPEC_FILE
    if name == MOCK:
        from galaxyprop.mock.config import MockConfig
        from galaxyprop.mock.survey import simulate_survey

        if mock is None:
            raise GalaxypropError("params.yaml: data.source is 'mock' but there is no 'mock' section")
        simulate_survey(MockConfig.from_params(mock), images, catalog, progress)
        return [images, catalog]
    for key in ("images", "catalog"):
        if key not in spec:
            raise GalaxypropError(f"params data.sources.{name}.{key}: path missing")
    files = _copy_images(str(spec["images"]), raw)
    _copy(spec["catalog"], catalog)
    return [*files, catalog]
