"""The params (params.yaml and its group files) and the locations of the stores (overridable by
environment variables)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from galaxyprop.errors import GalaxypropError

#: Groups kept in their own file beside params.yaml (DVC reads several params files): the mock survey's
#: knobs and every data source's column map. In the loaded params they sit where they always did
#: (`params["mock"]`, `params["data"]["sources"]`); keys inside a file are written without the group.
GROUP_FILES = {"mock": "mock.yaml", "data.sources": "sources.yaml"}
#: Sections whose `seed` defaults to the global `seed` when they do not set their own.
#: (A head's seed is derived where it is made: pipelines/train.py gives the global seed to heads that take one.)
SEEDED = ("data", "mock", "split", "encoder.training", "calibration", "tuning", "drift", "adaptation.mlp",
          "baselines.*")


def load_yaml(text: str):
    """YAML text parsed safely, by libyaml where PyYAML has it (dvc.lock's 200 kB: 0.65 -> 0.11 s)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _read_yaml(path: Path):
    try:
        return load_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise GalaxypropError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None


def locate(dotted: str) -> str:
    """Where a dotted key of the loaded params is written: `mock.yaml: fields.north` for
    `mock.fields.north`, `sources.yaml: sdss_gst.bands` for `data.sources.sdss_gst.bands`,
    `params.yaml: heads.knn` otherwise."""
    for group, name in GROUP_FILES.items():
        if dotted == group or dotted.startswith(group + "."):
            return f"{name}: {dotted[len(group) + 1:] or '(the whole file)'}"
    return f"params.yaml: {dotted}"


def _derive_seeds(params: dict) -> None:
    """Give every seeded section without a `seed` of its own the global `seed`."""
    if "seed" not in params:
        return
    for pattern in SEEDED:
        nodes = [params]
        for key in pattern.split("."):
            nodes = [v for n in nodes if isinstance(n, dict)
                     for v in (n.values() if key == "*" else [n[key]] if key in n else [])]
        for node in nodes:
            if isinstance(node, dict) and node.get("seed") is None:
                node["seed"] = params["seed"]


def raw_params(path: str | Path = "params.yaml") -> dict:
    """params.yaml with its group files nested in, exactly as written (no derived seeds, unchecked)."""
    path = Path(path)
    if not path.exists():
        raise GalaxypropError(f"{path}: params file not found (run from the project root)")
    params = _read_yaml(path)
    if not isinstance(params, dict):
        raise GalaxypropError(f"{path}: expected a mapping of parameter groups")
    for group, name in GROUP_FILES.items():
        file = path.with_name(name)
        if not file.exists():
            continue
        *parents, leaf = group.split(".")
        node = params
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise GalaxypropError(f"{path}: '{key}' must be a mapping (it holds {name})")
        if leaf in node:
            raise GalaxypropError(f"{path}: '{group}' is also in {file}: keep it in one place ({name})")
        node[leaf] = _read_yaml(file)
    return params


def load_params(path: str | Path = "params.yaml", schemas: Iterable = ()) -> dict:
    """params.yaml with the group files beside it (GROUP_FILES) as one dict, every section's seed
    derived from the global one where not set, checked first against `schemas` (the
    `validation.rules.Schema` of each section the caller reads, declared by the package that reads
    it; `validation.project.SCHEMAS`: all of them), so that a bad value stops a stage or command with
    one line before it does anything."""
    params = raw_params(path)
    _derive_seeds(params)
    schemas = list(schemas)
    if schemas:
        from galaxyprop.validation.rules import validate

        validate(params, schemas)
    return params


def write_params(params: Mapping, folder: str | Path) -> None:
    """Write params (as `raw_params` reads them) back as params.yaml and the group files in `folder`:
    what tests and tools that edit a profile use."""
    import copy

    folder = Path(folder)
    rest = copy.deepcopy(dict(params))
    for group, name in GROUP_FILES.items():
        *parents, leaf = group.split(".")
        node = rest
        for key in parents:
            node = node.get(key, {})
        if leaf in node:
            (folder / name).write_text(yaml.safe_dump(node.pop(leaf), sort_keys=False))
    (folder / "params.yaml").write_text(yaml.safe_dump(rest, sort_keys=False))


def section(params: Mapping, dotted: str):
    """`params['a']['b']` for 'a.b', with a clear error naming the missing key and its file."""
    node = params
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise GalaxypropError(f"{locate(dotted)}: missing")
        node = node[key]
    return node


def params_hash(*parts: object) -> str:
    """Short, stable hash of parameter values (canonical JSON)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Stores:
    """Where MLflow (tracking, registry, artifacts) and Optuna keep their state. Against a tracking
    server (`http(s)://`, e.g. `galaxyprop server`) the server keeps the artifacts: `artifact_location`
    is None unless GALAXYPROP_ARTIFACT_LOCATION names one."""

    tracking_uri: str
    artifact_location: str | None
    optuna_storage: str
    experiment: str

    @classmethod
    def from_params(cls, params: Mapping) -> Stores:
        stores = section(params, "stores")
        tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", stores["tracking_uri"])
        served = tracking_uri.startswith(("http://", "https://"))
        artifacts = os.environ.get("GALAXYPROP_ARTIFACT_LOCATION", None if served else stores["artifact_location"])
        optuna_storage = os.environ.get("OPTUNA_STORAGE", stores["optuna_storage"])
        for uri in (tracking_uri, optuna_storage):
            if uri.startswith("sqlite:///"):
                Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if artifacts is not None and "://" not in artifacts:
            artifacts = Path(artifacts).resolve().as_uri()
        experiment = f"{stores.get('experiment_prefix', 'galaxyprop')}-{section(params, 'data.source')}"
        return cls(tracking_uri, artifacts, optuna_storage, experiment)
