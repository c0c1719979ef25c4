"""`galaxyprop drift`: check a batch of galaxies against the training data before a model is applied
to it. Exit 0: no drift; 3: drift detected; 2: bad input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from galaxyprop.config import load_params, section
from galaxyprop.data import schema
from galaxyprop.data.targets import target_names
from galaxyprop.errors import GalaxypropError, reading
from galaxyprop.lazy import lazy_module

if TYPE_CHECKING:
    from galaxyprop.monitoring.drift import DriftSettings, Sample
    from galaxyprop.monitoring.samples import Batch
from galaxyprop.workspace import BANDS, DRIFT_BATCHES, FEATURE_ENCODER, IMAGE_FEATURES, RAW, feature_path, prepared_path

pd = lazy_module("pandas")
detector = lazy_module("galaxyprop.monitoring.drift")
samples = lazy_module("galaxyprop.monitoring.samples")
promotion = lazy_module("galaxyprop.registry.promotion")
project = lazy_module("galaxyprop.validation.project")

EXIT_DRIFT = 3


def _bands(args: argparse.Namespace) -> list[str]:
    if args.bands:
        return [b.strip() for b in args.bands.split(",") if b.strip()]
    path = BANDS
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run `dvc repro prepare` or pass --bands g,r,z,W1")
    with reading(path, "bands of the prepared data"):
        return list(json.loads(path.read_text())["bands"])


def _models(args: argparse.Namespace, params: dict) -> dict:
    """Each target's model at `--model` (production falls back to candidate); none with `--model none`."""
    if args.model == "none":
        return {}
    from galaxyprop.config import Stores
    from galaxyprop.registry import versions as registry
    from galaxyprop.tracking import runs as tracking

    tracking.connect(Stores.from_params(params))
    models: dict[str, list] = {}
    for model in registry.model_ids(params["targets"]):
        target = registry.parse_model(model)[0]
        if args.model.isdigit():
            version = _version(registry, model, args.model)
        else:
            version = registry.alias_version(model, args.model)
            if version is None and args.model == "production":
                version = registry.alias_version(model, registry.CANDIDATE)
        if version is None:
            continue
        print(f"  predictions of {target} by {version.name} v{version.version} (if the batch has its inputs)")
        models.setdefault(target, []).append(registry.load_model(model, version.version))
    for target in sorted(set(target_names(params["targets"])) - set(models)):
        print(f"  (no model of {target} has a '{args.model}' version: no prediction drift for {target})")
    return models


def _version(registry, model: str, number: str):
    """Version `number` of `model`, or None where the model has no such version."""
    try:
        return registry.resolve_version(model, number)
    except GalaxypropError:
        return None


def _workspace_reference(field_name: str, bands: list[str], with_cutouts: bool, targets: dict) -> tuple[Sample, Batch]:
    """The pipeline's training galaxies of one survey field, with their embed-stage embeddings and,
    for models that take images, their cutouts."""
    path = prepared_path("train")
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run `dvc repro` or pass --reference FILE")
    with reading(path, "training split"):
        frame = pd.read_parquet(path)
    frame = frame[samples.field_mask(frame, field_name)].reset_index(drop=True)
    embeddings = None
    table_path = feature_path("image", "train")
    if table_path.exists():
        with reading(table_path, "image embeddings"):
            table = pd.read_parquet(table_path).set_index(schema.ID)
        embeddings = table.loc[frame[schema.ID]].to_numpy(np.float32)
    cutouts = None
    from galaxyprop.workspace import raw_images

    images = raw_images(RAW)
    if with_cutouts and images is not None and "image_row" in frame.columns:
        from galaxyprop.data.astroclip import AstroclipFile

        with AstroclipFile(images) as file:
            cutouts = file.cutouts(frame["image_row"].to_numpy())
    batch = samples.Batch(path, frame, cutouts)
    return samples.to_sample(f"{field_name}_train", frame, bands, embeddings, targets=targets), batch


def _file_sample(path: str, catalog: str | None, bands: list[str], encoder: Path, name: str,
                 column_map=None, *, targets: dict) -> tuple[Sample, Batch]:
    batch = samples.read_batch(path, bands, catalog, column_map, targets=targets)
    embeddings = None
    if batch.cutouts is not None:
        if not encoder.exists():
            raise GalaxypropError(f"{encoder}: image encoder not found (run `dvc repro embed` or pass --encoder)")
        embeddings = samples.embed(batch.cutouts, encoder, progress=True)
    return samples.to_sample(name, batch.frame, bands, embeddings, targets=targets), batch


def _describe(comparison, settings: DriftSettings) -> list[str]:
    v = comparison.verdict
    lines = [f"{comparison.name}: {'DRIFT DETECTED' if v['detected'] else 'no drift'} "
             f"(reference {v['n_reference']} galaxies, current {v['n_current']})"]
    if "share_drifted" in v:
        scores = ", ".join(f"{c} {v['column_scores'][c]:.3g}" for c in v["drifted_columns"]) or "none"
        rule = "any one" if settings.drift_share is None else f"share {settings.drift_share:g}"
        lines.append(f"  photometry: {len(v['drifted_columns'])}/{len(v['column_scores'])} columns drifted ({rule} "
                     f"counts; {settings.column_method} threshold {v['settings']['column_threshold']:.3g}): {scores}")
    if "embedding_drift_score" in v:
        lines.append(f"  image embeddings: {v['embedding_method']} score {v['embedding_drift_score']:.3f} -> "
                     f"{'drift' if v['embedding_detected'] else 'no drift'}")
    for target, p in v.get("prediction_drift", {}).items():
        lines.append(f"  prediction of {target}: score {p['score']:.3g} -> {'drift' if p['detected'] else 'no drift'}")
    for target, metrics in v.get("metrics", {}).items():
        for metric, sides in metrics.items():
            lines.append(f"  {target} {metric}: reference {sides['reference']:.4g}, current {sides['current']:.4g}")
    return lines


def drift(args: argparse.Namespace) -> int:
    from galaxyprop.data.io import write_json

    params = load_params(args.params, project.SCHEMAS)
    spec = section(params, "drift")
    settings = detector.DriftSettings.from_params(spec.get("tests") or {})
    bands = _bands(args)
    encoder = Path(args.encoder)
    current_name = samples.sample_name(args.name or Path(args.current).stem)
    if args.out is not None:        # a folder the report may be written to, before any work
        from galaxyprop.cli.outputs import check_output
        from galaxyprop.config import Stores

        check_output(args.out, "--out", Stores.from_params(params), args.force, folder=True)
    column_map = None
    if args.source:
        from galaxyprop.data.catalog import CatalogSpec

        column_map = CatalogSpec.of_source(section(params, "data"), args.source)
    current, current_batch = _file_sample(args.current, args.current_catalog, bands, encoder, current_name,
                                          column_map, targets=params["targets"])
    models = _models(args, params)
    if args.reference:
        reference, reference_batch = _file_sample(args.reference, args.reference_catalog, bands, encoder,
                                                  samples.sample_name(Path(args.reference).stem), column_map,
                                                  targets=params["targets"])
    else:
        reference, reference_batch = _workspace_reference(args.reference_field or spec["reference_field"], bands,
                                                          with_cutouts=bool(models), targets=params["targets"])
    if reference.name == current.name:
        current.name = f"{current.name}_current"
    for batch in (current_batch, reference_batch):
        line = batch.describe_dropped()
        if line:
            print(line)
    if models:
        for sample, batch in ((reference, reference_batch), (current, current_batch)):
            skipped: dict[str, str] = {}
            sample.predictions = samples.predict(models, batch.frame, batch.cutouts, skipped, progress=True)
            for target, why in skipped.items():
                print(f"  (no prediction drift for {target} on '{sample.name}': {why})")

    comparison = detector.compare(reference, current, settings, embedding_map=args.embedding_map,
                                    metrics_of=promotion.metric_function(params))
    out = Path(args.out or DRIFT_BATCHES / current.name)
    comparison.save_html(out / f"{comparison.name}.html")
    write_json({comparison.name: comparison.verdict}, out / "summary.json")
    print("\n".join(_describe(comparison, settings)))
    print(f"  report: {out / (comparison.name + '.html')}\n  summary: {out / 'summary.json'}")
    return EXIT_DRIFT if comparison.verdict["detected"] else 0


def add_command(commands) -> None:
    p = commands.add_parser("drift", help="check a batch of galaxies for drift from the training data "
                            "(exit 0: none, 3: drift detected)")
    p.add_argument("--current", required=True,
                   help="the batch: AstroCLIP-layout .h5 (images), or a catalogue .parquet/.fits/.csv with "
                        "flux_<band> and flux_ivar_<band> (any case); target columns (z, kcorr_r01, ...) give "
                        "metrics where present")
    p.add_argument("--current-catalog", help="FastSpecFit .fits joined to an --current image file on TARGETID "
                                             "(photometry and labels)")
    p.add_argument("--source", help="read --current (and --reference) with this data.sources entry's column map "
                                    "(a catalogue in the training catalogue's format: magnitudes, extinction, ids)")
    p.add_argument("--reference", help="a reference batch in the same forms (default: the pipeline's training "
                                       "galaxies of --reference-field)")
    p.add_argument("--reference-catalog", help="FastSpecFit .fits joined to a --reference image file")
    p.add_argument("--reference-field", help="survey field of the default reference (default: params "
                                             "drift.reference_field)")
    p.add_argument("--model", default="production",
                   help="registered models whose predictions are compared: an alias (production falls back to "
                        "candidate), a version number, or none")
    p.add_argument("--encoder", default=str(IMAGE_FEATURES / FEATURE_ENCODER),
                   help="image encoder that embeds the cutouts (the embed stage's)")
    p.add_argument("--bands", help=f"comma-separated bands (default: {BANDS})")
    p.add_argument("--name", help="the batch's name in the report (default: the file name)")
    p.add_argument("--out", help="folder for the HTML report and summary.json (default: reports/drift/batches/<name>)")
    p.add_argument("--force", action="store_true", help="write --out even inside a pipeline output")
    p.add_argument("--embedding-map", action="store_true",
                   help="add Evidently's embeddings report with its t-SNE map to the HTML (slow)")
    p.set_defaults(func=drift)
