"""The registry commands: promote, rollback, history, models, lineage."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from galaxyprop.config import Stores, load_params, section
from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError, reading
from galaxyprop.lazy import lazy_module
from galaxyprop.workspace import DRIFT_SUMMARY, PREPARED, RAW, TEST_SPLIT

pd = lazy_module("pandas")
registry = lazy_module("galaxyprop.registry.versions")
promotion = lazy_module("galaxyprop.registry.promotion")
project = lazy_module("galaxyprop.validation.project")
tracking = lazy_module("galaxyprop.tracking.runs")

EXIT_REFUSED = 1
EXIT_DATA_DIFFERS = 3


def connect(args: argparse.Namespace) -> dict:
    params = load_params(args.params, project.SCHEMAS)
    if getattr(args, "target", None):   # an unknown model fails before any store is touched
        registry.parse_model(args.target, params["targets"])
    tracking.connect(Stores.from_params(params))
    return params


def backup(params: dict) -> None:
    """A copy of the SQLite registry before a command moves an alias (`tracking.integrity`)."""
    from galaxyprop.tracking.integrity import backup_store

    copy = backup_store(Stores.from_params(params).tracking_uri)
    if copy is not None:
        print(f"store backed up to {copy}", flush=True)


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain-text table with a header and aligned columns."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def images_path(args: argparse.Namespace) -> Path:
    """--images, or the AstroCLIP file (or shard folder) the import stage brought into data/raw."""
    from galaxyprop.workspace import raw_images

    if args.images:
        return Path(args.images)
    found = raw_images(RAW)
    if found is None:
        raise GalaxypropError(f"{RAW} has no AstroCLIP images (run `dvc repro import_data`) or pass --images")
    return found


def model_input(model, test: pd.DataFrame, test_path: Path, images_path: Path):
    """The test rows as the model takes them: catalogue columns, cutouts from the image file, or both."""
    from galaxyprop.deploy.batch import ModelInput

    need = ModelInput.of(model)
    if need.multimodal:
        missing = [c for c in need.flux_columns if c not in test.columns]
        if missing:
            raise GalaxypropError(f"{test_path}: lacks the model's flux columns {missing}")
        return need.tensors(model_input_cutouts(test, test_path, images_path), test)
    input_schema = model.metadata.get_input_schema()
    if not input_schema.is_tensor_spec():
        missing = [c for c in input_schema.required_input_names() if c not in test.columns]
        if missing:
            raise GalaxypropError(f"{test_path}: lacks the model's input columns {missing}")
        return test[input_schema.required_input_names()]
    return model_input_cutouts(test, test_path, images_path)


def model_input_cutouts(test: pd.DataFrame, test_path: Path, images_path: Path):
    """The test rows' cutouts from the image file."""
    from galaxyprop.data.astroclip import AstroclipFile
    from galaxyprop.data.desi import IMAGE_ROW

    if IMAGE_ROW not in test.columns:
        raise GalaxypropError(f"{test_path}: the model takes image cutouts but the test split has no '{IMAGE_ROW}'")
    with AstroclipFile(images_path) as file:
        return file.cutouts(test[IMAGE_ROW].to_numpy())


def evaluator(args: argparse.Namespace, params: dict, metric: str):
    """`evaluate(model_uri)`: on the whole test split and on each survey field in it, the metric of the
    model's prediction and the calibration of what it serves (its [q16, q84] and [q02, q98] coverage,
    its densities' PIT KS)."""
    import mlflow.pyfunc
    import numpy as np

    from galaxyprop.registry.predictor import FIELD_PARAM

    test_path = Path(args.test_data)
    if not test_path.exists():
        raise GalaxypropError(f"{test_path}: test split not found (run `dvc repro` or pass --test-data)")
    with reading(test_path, "test split"):
        test = pd.read_parquet(test_path).reset_index(drop=True)
    name = registry.parse_model(args.target, params['targets'])[0]
    if name not in test.columns:
        raise GalaxypropError(f"{test_path}: no column '{name}' with the true values")
    target = section(params, f"targets.{name}")
    codes = test[schema.PHOTSYS].astype(str).to_numpy() if schema.PHOTSYS in test.columns else None
    names = None if codes is None else np.array([schema.field_name(c) for c in codes], dtype=object)
    truth = test[name].to_numpy(float)

    def evaluate(model_uri: str) -> dict[str, dict[str, float]]:
        model = mlflow.pyfunc.load_model(model_uri)
        parts = []
        for code in ([None] if codes is None else sorted(set(codes))):   # each field with its calibration
            rows = test.index if code is None else test.index[codes == code]
            inputs = model_input(model, test.loc[rows], test_path, images_path(args))
            parts.append(model.predict(inputs, params={FIELD_PARAM: code} if code else None).set_axis(rows))
        served = pd.concat(parts).sort_index()
        grid = getattr(getattr(model.unwrap_python_model(), "predictor", None), "grid", None)
        return promotion.served_evaluation(served, truth, names, grid, name, metric, target["outlier_threshold"],
                                 section(params, "evaluation.eta_threshold"))
    return evaluate


def spectrum_gate(args: argparse.Namespace, params: dict):
    """The spectrum model's gate (latent_mse_relative overall and per field; params `spectra.promotion`) and
    `evaluate(model_uri)`: the served latents of the test galaxies against their spectra's own latents."""
    import mlflow.pyfunc
    import numpy as np

    from galaxyprop.data.astroclip import AstroclipFile
    from galaxyprop.data.desi import IMAGE_ROW
    from galaxyprop.registry.spectrum import METRIC, latent_evaluation

    rule = section(params, "spectra.promotion")
    gate = promotion.Gate(METRIC, float(rule["field_tolerance"]), float(rule["drift_limit"]), None)
    test_path = Path(args.test_data)
    if not test_path.exists():
        raise GalaxypropError(f"{test_path}: test split not found (run `dvc repro` or pass --test-data)")
    with reading(test_path, "test split"):
        test = pd.read_parquet(test_path).reset_index(drop=True)
    if IMAGE_ROW not in test.columns:
        raise GalaxypropError(f"{test_path}: the spectrum model takes cutouts but the test split has no '{IMAGE_ROW}'")
    with AstroclipFile(images_path(args)) as file:
        cutouts = file.cutouts(test[IMAGE_ROW].to_numpy())
        flux, ivar = file.spectra(test[IMAGE_ROW].to_numpy())
    names = (np.array([schema.field_name(c) for c in test[schema.PHOTSYS].astype(str)], dtype=object)
             if schema.PHOTSYS in test.columns else None)

    def evaluate(model_uri: str) -> dict[str, dict[str, float]]:
        model = mlflow.pyfunc.load_model(model_uri)
        predictor = model.unwrap_python_model().predictor
        truth = predictor.latent.encode(flux, ivar, test[schema.REDSHIFT].to_numpy(float))[0]
        return latent_evaluation(model.predict(cutouts), truth, predictor.latent.train_latents_, names)
    return gate, evaluate


def drift_verdict(path: Path) -> list[str]:
    """Fields with detected drift in the drift summary at `path` (none if there is no summary yet)."""
    if not path.exists():
        return []
    with reading(path, "drift summary"):
        summary = json.loads(path.read_text())
    return promotion.drifted_fields(summary)


def promote(args: argparse.Namespace) -> int:
    params = connect(args)
    target = registry.parse_model(args.target, params['targets'])[0]
    if target == registry.SPECTRUM_MODEL:
        gate, evaluate = spectrum_gate(args, params)
    else:
        metric = args.metric or section(params, f"targets.{target}.metric")
        gate = promotion.Gate.from_params(params.get("registry", {}).get("promotion", {}), target, metric)
        evaluate = evaluator(args, params, metric)
    drifted = drift_verdict(Path(args.drift_summary))
    backup(params)
    try:
        result = registry.promote(args.target, args.version, evaluate, gate, drifted, args.force, args.reason)
    except registry.PromotionRefused as refused:
        print(f"galaxyprop: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    print(result.message)
    return 0


def check(args: argparse.Namespace) -> int:
    """A version's served output on the test split, per field: its metric, interval coverage and PIT
    KS, and what the gate's calibration rule says; exit 1 if it fails the rule."""
    params = connect(args)
    target = registry.parse_model(args.target, params['targets'])[0]
    metric = args.metric or section(params, f"targets.{target}.metric")
    gate = promotion.Gate.from_params(params.get("registry", {}).get("promotion", {}), target, metric)
    version = registry.resolve_version(args.target, args.model)
    evaluation = evaluator(args, params, metric)(f"models:/{version.name}/{version.version}")
    rows = [{"field": field, "n": int(values.get("n", 0)), metric: f"{values[metric]:.5g}",
             "[q16, q84] covers": f"{values.get('coverage_68', float('nan')):.3f}",
             "[q02, q98] covers": f"{values.get('coverage_95', float('nan')):.3f}",
             "PIT KS": f"{values.get('pit_ks', float('nan')):.4f}"} for field, values in evaluation.items()]
    print(f"{version.name} v{version.version} ({version.tags.get('head', '?')}, calibration: "
          f"{version.tags.get('calibration', '?')}) on {args.test_data}")
    bypassed = registry.unrecorded_production(args.target)
    if bypassed:
        print(f"! {bypassed}")
    print(table(rows, list(rows[0])))
    found = gate.calibration.problems(evaluation, "test") if gate.calibration else []
    print("calibration rule: " + ("passes" if not found else "FAILS: " + "; ".join(found)))
    return EXIT_REFUSED if found else 0


def rollback(args: argparse.Namespace) -> int:
    backup(connect(args))
    print(registry.rollback(args.target, args.reason).message)
    return 0


def history(args: argparse.Namespace) -> int:
    connect(args)
    moves = registry.history(args.target)
    if not moves:
        print(f"{registry.model_name(args.target)}: production has never been set")
        return 0
    rows = [{"when (UTC)": m.at.replace("T", " ").removesuffix("+00:00"), "action": m.action,
             "production": f"v{m.version}", "from": f"v{m.previous}" if m.previous else "-", "by": m.by,
             "why": m.why} for m in moves]
    print(table(rows, ["when (UTC)", "action", "production", "from", "by", "why"]))
    return 0


def _short(value: str | None, n: int = 8) -> str:
    return (value or "-")[:n]


def models(args: argparse.Namespace) -> int:
    params = connect(args)
    tables = []
    for model in [args.target] if args.target else registry.model_ids(params["targets"]):
        metric = section(params, f"targets.{registry.parse_model(model)[0]}.metric")
        rows = []
        for v in registry.versions(model):
            tags = v.tags
            created = datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            selection = tags.get("selection_metric", metric)
            rows.append({"version": v.version, "aliases": ",".join(v.aliases) or "-", "head": tags.get("head", "?"),
                         "features": tags.get("features", "?"), "dataset": tags.get("dataset", "?"),
                         "calibrated": {"true": "yes", "false": "NO"}.get(tags.get("calibrated", ""), "?"),
                         "val selection": f"{selection} {tags.get(f'val_{selection}', '-')}",
                         "val 68 %": tags.get("val_coverage_68", "-"),
                         f"val {metric}": tags.get(f"val_{metric}", "-"),
                         f"test {metric}": tags.get(f"test_{metric}", "-"), "created (UTC)": created,
                         "git": _short(tags.get("git_commit")), "data": _short(tags.get("data_hash")),
                         "run": _short(v.run_id)})
        if rows:
            bypassed = registry.unrecorded_production(model)
            tables.append(f"{registry.model_name(model)}\n{table(rows, list(rows[0]))}"
                          + (f"\n! {bypassed}" if bypassed else ""))
    print("\n\n".join(tables) if tables else
          "no registered models yet: run `dvc repro` (its register stage registers the candidates)")
    return 0


def lineage(args: argparse.Namespace) -> int:
    """Where a version came from, the command that reproduces it, and whether the workspace data matches."""
    from galaxyprop.provenance import dvc_output_hash, workspace_output_change

    connect(args)
    version = registry.resolve_version(args.target, args.version)
    tags = version.tags
    commit, data_hash = tags.get("git_commit", "unknown"), tags.get("data_hash", "unknown")
    print(f"{version.name} version {version.version} (aliases: {', '.join(version.aliases) or 'none'})")
    facts = {"head": f"{tags.get('head', '?')}@{tags.get('features', '?')}", "dataset": tags.get("dataset", "?"),
             "run": f"{version.run_id} (MLflow)", "git commit": commit, "data hash": f"{PREPARED} md5 {data_hash}",
             "params hash": tags.get("params_hash", "?")}
    for key, value in facts.items():
        print(f"  {key:<12} {value}")
    clean = commit.removesuffix("-dirty")
    print(f"  {'reproduce':<12} git checkout {clean} && dvc checkout && dvc repro")
    if commit.endswith("-dirty"):
        print(f"  {'':<12} (the working tree had uncommitted changes: the commit alone may not reproduce it)")
    locked = dvc_output_hash(PREPARED)
    change = workspace_output_change(PREPARED) if locked else "missing from dvc.lock"
    if locked == data_hash and change is None:
        print(f"  {'workspace':<12} data matches: {PREPARED} is md5 {locked}")
        return 0
    detail = change or f"dvc.lock has md5 {locked}"
    print(f"  {'workspace':<12} data DIFFERS from this version's: {PREPARED} {detail}; "
          f"run the command above to get the version's data")
    return EXIT_DATA_DIFFERS


#: How the commands name a registered model.
MODEL_HELP = ("the registered model: z (galaxyprop-z: cutouts and catalogue fluxes), z-images (cutouts alone), "
              "z-catalogue (catalogue fluxes alone); kcorr_r01, kcorr_r01-images, ... likewise")


def add_commands(commands) -> None:
    """The registry subcommands of `galaxyprop`."""
    p = commands.add_parser("promote", help="move `production` to a candidate that passes the gate")
    p.add_argument("target", help=MODEL_HELP)
    p.add_argument("--version", help="model version to promote (default: the `candidate` alias)")
    p.add_argument("--metric", help="metric to compare (default: params targets.<target>.metric)")
    p.add_argument("--test-data", default=str(TEST_SPLIT), help="test split to evaluate on")
    p.add_argument("--images", help="AstroCLIP file (HDF5 or Parquet shards) with the test split's cutouts "
                                    "(image models; default: the one in data/raw)")
    p.add_argument("--drift-summary", default=str(DRIFT_SUMMARY),
                   help="drift verdicts per field (read when it exists)")
    p.add_argument("--force", action="store_true", help="promote even if the gate refuses (needs --reason)")
    p.add_argument("--reason", help="why a forced promotion is right; recorded with the move")
    p.set_defaults(func=promote)

    p = commands.add_parser("check", help="a version's served metric, interval coverage and PIT per field on the "
                                          "test split, against the gate's calibration rule")
    p.add_argument("target", help=MODEL_HELP)
    p.add_argument("--model", default="candidate", help="alias or version number (default: candidate)")
    p.add_argument("--metric", help="metric to report (default: params targets.<target>.metric)")
    p.add_argument("--test-data", default=str(TEST_SPLIT), help="test split to evaluate on")
    p.add_argument("--images", help="AstroCLIP file (HDF5 or Parquet shards) with the test split's cutouts "
                                    "(image models; default: the one in data/raw)")
    p.set_defaults(func=check)

    p = commands.add_parser("rollback", help="move `production` back to the previous production version")
    p.add_argument("target", help=MODEL_HELP)
    p.add_argument("--reason", required=True, help="why; recorded with the move")
    p.set_defaults(func=rollback)

    p = commands.add_parser("history", help="every move of `production`: who, when, why")
    p.add_argument("target", help=MODEL_HELP)
    p.set_defaults(func=history)

    p = commands.add_parser("models", help="registered versions with aliases, head, dataset, metrics, lineage")
    p.add_argument("target", nargs="?", help="one registered model (default: all); " + MODEL_HELP)
    p.set_defaults(func=models)

    p = commands.add_parser("lineage", help="a version's commit, data hash and the command reproducing it")
    p.add_argument("target", help=MODEL_HELP)
    p.add_argument("version", help="version number or alias (production, candidate)")
    p.set_defaults(func=lineage)
