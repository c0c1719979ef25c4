"""MLflow model registry: register candidates with lineage tags, and the gated promotion."""

from __future__ import annotations

import getpass
import hashlib
import importlib.metadata
import json
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from mlflow.types.schema import ColSpec, Schema

import galaxyprop
from galaxyprop.data.targets import is_name
from galaxyprop.errors import GalaxypropError
from galaxyprop.features.multimodal import REGISTERED_KINDS, Multimodal
from galaxyprop.registry import promotion
from galaxyprop.registry.lock import store_lock
from galaxyprop.registry.predictor import FIELD_PARAM, OUTPUT_COLUMNS, Predictor
from galaxyprop.registry.promotion import Gate
from galaxyprop.registry.serving import CUTOUTS, FLUXES, PREDICTOR_ARTIFACT, multimodal_tensors, tensors_input

CANDIDATE = "candidate"
PRODUCTION = "production"
HISTORY_TAG = "history."


#: The registered models of a target, by what their users bring, and the suffix of their id and name:
#: `galaxyprop-z` takes cutouts and catalogue fluxes together, `galaxyprop-z-images` the cutouts alone,
#: `galaxyprop-z-catalogue` the catalogue fluxes alone.
INPUT_KINDS = {"multimodal": "", "images": "-images", "catalogue": "-catalogue"}


def model_id(target: str, kind: str = "multimodal") -> str:
    """The registry's id of the target's model taking `kind` of input (`z`, `z-images`, `z-catalogue`)."""
    if kind not in INPUT_KINDS:
        raise GalaxypropError(f"unknown kind of input '{kind}'; choose from {sorted(INPUT_KINDS)}")
    return parse_model(target + INPUT_KINDS[kind])[0] + INPUT_KINDS[kind]


#: The spectrum model (registry.spectrum): cutouts in, a spectrum out; not a target's model.
SPECTRUM_MODEL = "spectrum"


def parse_model(model: str, targets: Iterable[str] | None = None) -> tuple[str, str]:
    """(target, kind of input) of a registered model's id: `z` (multimodal), `z-images`, `z-catalogue`;
    `spectrum` (cutouts in) is the spectrum model's. `targets`: the project's target names, which the
    id's target must be one of (a user's choice is checked against them before any store is touched)."""
    if model == SPECTRUM_MODEL:
        return model, "images"
    target, kind = model, "multimodal"
    for name, suffix in INPUT_KINDS.items():
        if suffix and model.endswith(suffix):
            target, kind = model[:-len(suffix)], name
    if not is_name(target) or (targets is not None and target not in targets):
        suffixes = " or ".join(s for s in INPUT_KINDS.values() if s)
        choices = f"params targets ({', '.join(sorted(targets))})" if targets is not None else "params targets"
        raise GalaxypropError(f"unknown model '{model}'; choose a target of {choices}, optionally with {suffixes}, "
                              f"or {SPECTRUM_MODEL}")
    return target, kind


def model_name(model: str) -> str:
    """The registered model's name for an id: `z-images` -> `galaxyprop-z-images`."""
    parse_model(model)
    return f"galaxyprop-{model}"


def predictor_kind(predictor: Predictor) -> str:
    """The kind of input a predictor's registered model takes, or a clear error."""
    if predictor.input_kind not in REGISTERED_KINDS:
        raise GalaxypropError(f"a model taking {predictor.input_kind} has no registered kind "
                              f"({sorted(INPUT_KINDS)}); register it under an explicit model id")
    return REGISTERED_KINDS[predictor.input_kind]


def model_ids(targets: Iterable[str]) -> list[str]:
    """Every registered model id galaxyprop may write for `targets`, target by target."""
    return [target + suffix for target in sorted(targets) for suffix in INPUT_KINDS.values()]


def pip_requirements(extras: Iterable[str] = ()) -> list[str]:
    """galaxyprop's requirements and those of its `extras` (explicit: MLflow's inference would reload the
    model in a subprocess)."""
    wanted = [f'extra == "{e}"' for e in extras]
    return [r.split(";")[0] for r in importlib.metadata.requires("galaxyprop") or []
            if "extra ==" not in r or any(w in r for w in wanted)]


def extras_of(head) -> tuple[str, ...]:
    """The optional extras a head needs where it is served (RAIL's estimators: `rail`)."""
    return ("rail",) if type(head).__module__.startswith("galaxyprop.heads.rail_") else ()


def register_predictor(predictor: Predictor, input_example, tags: Mapping[str, str], metrics: Mapping[str, float],
                       model: str | None = None, unit: str | None = None) -> str:
    """Log `predictor` as a pyfunc in the active run, register it as `model` (an id: `z`, `z-images`,
    `z-catalogue`; default the target's multimodal model), alias it `candidate`; return the version.

    The default id is the target's model for the predictor's kind of input (`z-catalogue` for a
    catalogue-in predictor of z). `input_example` is a few rows of what the model takes: catalogue rows (only the model's
    columns are kept), an array of cutouts / embeddings, or `Multimodal` cutouts and rows (two named
    tensors, `cutouts` and `fluxes`: its flux columns in the order the metadata's `flux_columns` give);
    the signature is inferred from it.
    """
    name = model_name(model or model_id(predictor.target, predictor_kind(predictor)))
    extra = {}
    if isinstance(input_example, Multimodal):
        example = multimodal_tensors(input_example, predictor.input_columns)
        served = predictor.predict(tensors_input(example, predictor.input_columns))
        extra = {"flux_columns": predictor.input_columns,
                 "inputs": {CUTOUTS: "g,r,z cutouts (N, 3, H, W) in nanomaggies per pixel",
                            FLUXES: "catalogue fluxes (N, len(flux_columns)) in nanomaggies, Galactic extinction "
                                    "removed, in the order of flux_columns"}}
    elif isinstance(input_example, pd.DataFrame):
        example = input_example[predictor.input_columns].reset_index(drop=True)
        served = predictor.predict(example)
    else:
        example = np.ascontiguousarray(input_example, dtype=np.float32)
        served = predictor.predict(example)
    signature = infer_signature(example, served, params={FIELD_PARAM: ""})
    if isinstance(example, pd.DataFrame):   # a catalogue may name each row's field (its PHOTSYS column)
        signature.inputs = Schema([*signature.inputs.inputs, ColSpec("string", "PHOTSYS", required=False)])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictor.joblib"
        predictor.save(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MLflow asks for predict() type hints
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
                artifacts={PREDICTOR_ARTIFACT: str(path)},
                signature=signature, input_example=example,
                pip_requirements=pip_requirements(extras_of(predictor.head)),
                metadata={"target": predictor.target, "unit": unit or "not given (params targets.<t>.unit)",
                          "output_columns": OUTPUT_COLUMNS, "density_grid": asdict(predictor.grid),
                          "training_support": (predictor.support.describe() if predictor.support is not None
                                               else predictor.support_report),
                          "field_param": f"{FIELD_PARAM}: N or S (north or south) for the whole batch, or a "
                                         "PHOTSYS column of a catalogue: picks the field's calibration", **extra},
                code_paths=[str(Path(galaxyprop.__file__).parent)], registered_model_name=name)
    version = str(info.registered_model_version)
    # the test metrics as the logged model's metrics (MLflow 3: the version's page shows them as numbers,
    # comparable across versions), and as the version's tags for clients that read tags
    finite = {f"test_{k}": float(v) for k, v in metrics.items() if np.isfinite(v)}
    if finite:
        mlflow.log_metrics(finite, model_id=info.model_id)
    client = MlflowClient()
    calibration = {"calibrated": str(predictor.calibrated).lower(), "calibration": predictor.calibration_method}
    for key, value in {**tags, **calibration, **{f"test_{k}": f"{v:.6g}" for k, v in metrics.items()}}.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.set_registered_model_alias(name, CANDIDATE, version)
    return version


def resolve_version(target: str, ref: str | None = None):
    """The model version named by an alias (default `candidate`) or a version number."""
    name = model_name(target)
    client = MlflowClient()
    ref = ref or CANDIDATE
    try:
        if str(ref).isdigit():
            return client.get_model_version(name, str(ref))
        return client.get_model_version_by_alias(name, ref)
    except MlflowException:
        hint = ""
        if ref == PRODUCTION:
            try:
                candidate = client.get_model_version_by_alias(name, CANDIDATE).version
                hint = (f": nothing has been promoted yet; `galaxyprop promote {target}` gates its candidate "
                        f"(v{candidate}) into production, or `--model candidate` uses the candidate as it is")
            except MlflowException:
                pass
        raise GalaxypropError(f"model '{name}' has no version or alias '{ref}'{hint}") from None


def alias_version(target: str, alias: str):
    try:
        return resolve_version(target, alias)
    except GalaxypropError:
        return None


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    version: str
    message: str


class PromotionRefused(GalaxypropError):
    """The candidate failed the promotion gate."""


@dataclass(frozen=True)
class Move:
    """One move of the `production` alias, as the registered model's history records it."""

    action: str              # promote | force | rollback
    version: str
    previous: str | None
    at: str
    by: str
    why: str


def _history_tags(target: str) -> dict[int, str]:
    """The history tags of the target's model by index (`history.000003` -> 3)."""
    name = model_name(target)
    try:
        tags = MlflowClient().get_registered_model(name).tags
    except MlflowException:
        raise GalaxypropError(f"no registered model '{name}'") from None
    found = {}
    for key, value in tags.items():
        index = key.removeprefix(HISTORY_TAG)
        if key.startswith(HISTORY_TAG) and index.isdigit():
            found[int(index)] = value
    return found


def history(target: str) -> list[Move]:
    """Every move of `production`, oldest first (tags `history.NNNNNN` on the registered model)."""
    tags = _history_tags(target)
    return [Move(**json.loads(tags[index])) for index in sorted(tags)]


@contextmanager
def production_lock(target: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the store's exclusive lock on the target's model: one move of `production` at a time,
    across processes (see `galaxyprop.registry.lock` for how each kind of store is locked)."""
    with store_lock(mlflow.get_registry_uri(), model_name(target), timeout):
        yield


def _move_production(target: str, action: str, version: str, previous: str | None, why: str,
                     version_tags: Mapping[str, str] | None = None) -> Move:
    """Point `production` at `version` and record who, when and why: on the version and in the history.

    The caller holds `production_lock` and read `previous` under it."""
    name = model_name(target)
    client = MlflowClient()
    move = Move(action, version, previous, datetime.now(UTC).isoformat(timespec="seconds"),
                getpass.getuser(), why)
    for key, value in {**(version_tags or {}), "promoted_at": move.at, "promoted_by": move.by, "promotion_note": why,
                       "previous_production": previous or "none"}.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.set_registered_model_alias(name, PRODUCTION, version)
    index = max(_history_tags(target), default=-1) + 1    # never reuses an index, even after a gap
    client.set_registered_model_tag(name, f"{HISTORY_TAG}{index:06d}", json.dumps(asdict(move)))
    client.update_registered_model(name, description=history_markdown(history(target)))
    return move


def history_markdown(moves: Sequence[Move]) -> str:
    """The history as the registered model's description: a table MLflow's UI shows on the model's page
    (the `history.NNNNNN` tags stay the machine-read record)."""
    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    rows = [f"| {m.at} | {m.action} | v{m.version} | {'v' + m.previous if m.previous else '-'} | {cell(m.by)} | "
            f"{cell(m.why)} |" for m in reversed(moves)]
    return "\n".join(["**Production history** (`galaxyprop promote` / `rollback`, newest first; "
                      "`galaxyprop history <model>` prints it)", "",
                      "| when (UTC) | action | version | previous | by | why |", "|---|---|---|---|---|---|", *rows])


def promote(target: str, version: str | None, evaluate: Callable[[str], promotion.Evaluation], gate: Gate,
            drifted: Sequence[str] = (), force: bool = False, reason: str | None = None,
            lock_timeout: float | None = None) -> PromotionResult:
    """Move `production` to the candidate if it passes `gate` (see `promotion.problems`).

    `evaluate(model_uri)` gives, overall (`all`) and on each field of the test split, the metric and
    the served intervals' calibration, for the candidate and production alike. `force` needs a
    `reason`, recorded with the move.

    The whole read-evaluate-check-move-record sequence holds `production_lock`, so a concurrent
    promotion or rollback waits (up to `lock_timeout` s) and then sees this one's move."""
    if force and not reason:
        raise GalaxypropError("--force needs --reason \"...\" saying why")
    model_name(target)
    with production_lock(target, lock_timeout):
        return _promote(target, version, evaluate, gate, drifted, force, reason)


def _promote(target: str, version: str | None, evaluate: Callable[[str], promotion.Evaluation], gate: Gate,
             drifted: Sequence[str], force: bool, reason: str | None) -> PromotionResult:
    name = model_name(target)
    candidate = str(resolve_version(target, version).version)
    current = alias_version(target, PRODUCTION)
    production = None if current is None else str(current.version)
    if production == candidate:
        stack = production_stack(history(target))
        recorded = stack[-1] if stack else None
        if recorded == candidate:
            return PromotionResult(False, candidate, f"{name} version {candidate} is already production")
        # moved there outside galaxyprop: judged against the last production a gate decision put there
        production = recorded
    cand_eval = evaluate(f"models:/{name}/{candidate}")
    prod_eval = None if production is None else evaluate(f"models:/{name}/{production}")
    found = promotion.problems(gate, cand_eval, prod_eval, drifted)
    note = f"{gate.metric} on the test split: candidate v{candidate}: {promotion.describe(cand_eval, gate.metric)}"
    note += ("; first promotion" if prod_eval is None
             else f"; production v{production}: {promotion.describe(prod_eval, gate.metric)}")
    if drifted:
        note += f"; drift detected on {list(drifted)}"
    if found and not force:
        raise PromotionRefused(f"refused to promote {name} v{candidate}: " + "; ".join(found) + f" ({note})")
    tags = {f"eval_{field}_{key}": f"{value:.6g}" for field, values in cand_eval.items() for key, value in values.items()}
    tags["drift_verdict"] = f"drift on {list(drifted)}" if drifted else "no drift detected or no drift summary"
    if force:
        tags["force_reason"] = reason
        note = f"forced: {reason}; overriding: {'; '.join(found) or 'nothing'}; {note}"
    _move_production(target, "force" if force else "promote", candidate, production, note, tags)
    return PromotionResult(True, candidate, f"promoted {name} version {candidate} to production ({note})")


def production_stack(moves: Sequence[Move]) -> list[str]:
    """The versions production went through that a rollback can return to: promotions push, rollbacks pop."""
    stack: list[str] = []
    for move in moves:
        if move.action == "rollback":
            stack.pop()
        else:
            stack.append(move.version)
    return stack


def unrecorded_production(target: str) -> str | None:
    """Why the target's `production` alias is not where galaxyprop's recorded gate decisions put it (it
    was moved outside galaxyprop: MLflow's UI or API), in one line; None when it is, or is unset."""
    current = alias_version(target, PRODUCTION)
    if current is None:
        return None
    stack = production_stack(history(target))
    if stack and stack[-1] == str(current.version):
        return None
    return (f"{model_name(target)}: production is v{current.version}, which no recorded gate decision put there "
            f"(galaxyprop's history ends at {'v' + stack[-1] if stack else 'no promotion'}): it was moved outside "
            "galaxyprop; `galaxyprop promote` it through the gate, or `--force --reason` to record why")


def rollback(target: str, reason: str, lock_timeout: float | None = None) -> PromotionResult:
    """Move `production` back to the version it was before the latest promotion still in force
    (holding `production_lock`, like `promote`)."""
    if not reason:
        raise GalaxypropError("rollback needs --reason \"...\" saying why")
    model_name(target)
    with production_lock(target, lock_timeout):
        return _rollback(target, reason)


def _rollback(target: str, reason: str) -> PromotionResult:
    name = model_name(target)
    current = alias_version(target, PRODUCTION)
    if current is None:
        raise GalaxypropError(f"{name} has no production version to roll back")
    stack = production_stack(history(target))
    if not stack or stack[-1] != str(current.version):
        raise GalaxypropError(f"{name}: production is v{current.version} but its history ends at "
                              f"{'v' + stack[-1] if stack else 'nothing'} (the alias was moved outside galaxyprop); "
                              "promote a version with `galaxyprop promote --version N` instead")
    if len(stack) < 2:
        raise GalaxypropError(f"{name}: v{current.version} was the first production version; nothing to roll back to")
    previous = stack[-2]
    _move_production(target, "rollback", previous, stack[-1], f"rollback from v{stack[-1]}: {reason}")
    return PromotionResult(True, previous, f"rolled {name} production back from version {stack[-1]} to {previous}")


def versions(target: str) -> list:
    """Every registered version of the target's model with its aliases, newest first (MLflow
    ModelVersion objects; a search leaves the aliases out, so they come from the model)."""
    name = model_name(target)
    client = MlflowClient()
    found = client.search_model_versions(f"name = '{name}'")
    if not found:
        return []
    aliases = client.get_registered_model(name).aliases
    for version in found:
        version.aliases[:] = sorted(a for a, v in aliases.items() if str(v) == str(version.version))
    return sorted(found, key=lambda v: int(v.version), reverse=True)


def file_hash(path: str | Path) -> str:
    """sha256 of a file's bytes (e.g. a predictor.joblib), for the `model_hash` tag `find_version` matches."""
    from galaxyprop.provenance import file_digest

    return file_digest(path, "sha256")


def package_hash() -> str:
    """sha256 over the galaxyprop package's Python sources (what a registered pyfunc ships as its
    code): with `file_hash` of the predictor it tells whether a version would serve the same thing,
    even from a dirty working tree whose `git_commit` tag says nothing exact."""
    root = Path(galaxyprop.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def find_version(target: str, tags: Mapping[str, str]):
    """The newest registered version of the target's model whose tags hold every item of `tags`
    (values compared as strings), or None. With the lineage tags of a registration (`git_commit`,
    `data_hash`, `params_hash`, `model_hash`, ...) it finds the version an identical earlier run
    registered, so a re-run can re-point `candidate` (`set_candidate`) instead of adding a version."""
    if not tags:
        raise GalaxypropError("find_version needs at least one tag to match")
    wanted = {k: str(v) for k, v in tags.items()}
    matches = [v for v in versions(target) if all(v.tags.get(k) == value for k, value in wanted.items())]
    return matches[0] if matches else None


def set_candidate(target: str, version: str) -> None:
    """Point the `candidate` alias at an existing version."""
    MlflowClient().set_registered_model_alias(model_name(target), CANDIDATE, str(version))


def load_model(target: str, ref: str | None = None):
    version = resolve_version(target, ref)
    return mlflow.pyfunc.load_model(f"models:/{model_name(target)}/{version.version}")
