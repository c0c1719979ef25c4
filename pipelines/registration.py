"""The register stage's work (pipelines/register.py decides whether there is any): per target and kind of
input, choose the candidate among the results that pass the calibration rule and register it (or re-point
`candidate` at the version an identical earlier run registered); the same for galaxyprop-spectrum."""

from __future__ import annotations

import json
import logging

from galaxyprop.calibration import NOMINAL, OVERALL
from galaxyprop.config import Stores, params_hash, section
from galaxyprop.data.io import write_json
from galaxyprop.errors import GalaxypropError
from galaxyprop.heads import head_class, head_module
from galaxyprop.provenance import code_digest, git_commit
from galaxyprop.registry import versions as registry
from galaxyprop.registry.predictor import Predictor
from galaxyprop.registry.promotion import CalibrationRule, select_candidate
from galaxyprop.results import ResultName, inputs_of, result_of
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import (
    BREAKDOWN,
    HEADLINE,
    METRICS,
    REGISTERED,
    REGISTERED_SPECTRUM,
    SPECTRUM_MODELS,
    SPECTRUM_SELECTED,
    VAL_METRICS,
    model_dir,
)

from common import model_inputs, prepared_split, registered_kind

log = logging.getLogger("register")
#: The tags that make two registrations the same version.
SAME_VERSION = ("model_hash", "code_hash", "data_hash", "params_hash", "head", "features", "inputs", "target", "dataset")


def check_candidate_heads(heads: list[str]) -> None:
    """Every name in `registry.candidate_heads` must be a head (optionally `@features`)."""
    for name in heads:
        try:
            head_class(ResultName.parse(name).head)
        except GalaxypropError as err:
            raise GalaxypropError(f"params.yaml: registry.candidate_heads: {err}") from None


def candidates_by_kind(eligible: list[str], results: list[str], default_features: str) -> dict[str, list[str]]:
    """The results (metrics keys) each kind of registered model chooses among: those of an eligible head
    (`knn`: on every feature source; `knn@photometry`: on that one), grouped by what they take."""
    by_kind: dict[str, list[str]] = {kind: [] for kind in registry.INPUT_KINDS}
    for key in results:
        name = result_of(key, default_features)
        if name not in eligible and ResultName.parse(name).head not in eligible and key not in eligible:
            continue
        kind = registered_kind(inputs_of(key, default_features))
        if kind is not None:
            by_kind[kind].append(key)
    return {kind: keys for kind, keys in by_kind.items() if keys}


def uncalibrated_heads(target: str, heads: list[str], default_features: str) -> dict[str, str]:
    """Heads served uncalibrated (their calibration.json says why)."""
    out = {}
    for head in heads:
        path = model_dir(target, result_of(head, default_features)) / "calibration.json"
        if path.exists():
            report = json.loads(path.read_text())
            if not report.get("calibrated"):
                out[head] = report.get("reason", "not calibrated")
    return out


def register(model: str, target: str, kind: str, head: str, chosen: dict, val_calibration: dict, test_metrics: dict,
             example, params: dict, metric: str, data_hash: str) -> str:
    """Register result `head` as `model`'s candidate (or re-point `candidate` at the version an identical
    earlier run registered); the version."""
    default_features = section(params, "features.default")
    target_metric = section(params, f"targets.{target}.metric")
    name = result_of(head, default_features)
    head_name, features = ResultName.parse(name).head, inputs_of(head, default_features)
    predictor = Predictor.load(model_dir(target, name) / "predictor.joblib")
    overall = val_calibration.get(head, {}).get(OVERALL, {})
    tags = {"git_commit": git_commit(), "data_hash": data_hash, "head": head_name,
            "features": features, "inputs": kind, "dataset": section(params, "data.source"), "target": target,
            "params_hash": params_hash(params["data"], params.get("mock"), params["split"],
                                       params["features"], params.get("encoder"), params["heads"][head_name],
                                       params.get("calibration")),
            "selection_metric": metric, f"val_{metric}": f"{chosen[metric]:.6g}",
            f"val_{target_metric}": f"{chosen[target_metric]:.6g}",
            "val_coverage_68": f"{overall.get('coverage_68', float('nan')):.4g}",
            "val_pit_ks": f"{overall.get('pit_ks', float('nan')):.4g}"}
    tags["model_hash"] = registry.file_hash(model_dir(target, name) / "predictor.joblib")
    tags["code_hash"] = code_digest("galaxyprop.registry.pyfunc_entry", head_module(head_name))
    # A rerun on the same model, serving code, data and params re-points `candidate` at the version it
    # registered then (DVC runs this stage every time: the registry is state it cannot cache).
    existing = registry.find_version(model, {k: tags[k] for k in SAME_VERSION})
    if existing is not None:
        version = str(existing.version)
        registry.set_candidate(model, version)
        log.info("%s: unchanged since version %s; candidate points at it", registry.model_name(model), version)
        return version
    with tracking.child_run(f"register:{head}:{model}", tags=tags):
        inputs = model_inputs(predictor.input_kind, example, features)
        version = registry.register_predictor(predictor, inputs, tags, test_metrics, model=model,
                                              unit=section(params, f"targets.{target}").get("unit"))
    log.info("registered %s version %s (%s, val %s = %.5g, calibrated: %s) as candidate",
             registry.model_name(model), version, head, metric, chosen[metric], predictor.calibrated)
    return version


def register_spectrum_model(params: dict, data_hash: str) -> dict:
    """The spectra stage's selected result (the best on the cutouts alone) as galaxyprop-spectrum's
    candidate, or re-point `candidate` at the version an identical earlier run registered."""
    from galaxyprop.data.io import load_object
    from galaxyprop.registry.spectrum import METRIC, SPECTRUM, register_spectrum

    if not SPECTRUM_SELECTED.exists():
        return {"model": registry.model_name(SPECTRUM), "version": None,
                "skipped": "the spectra stage selected no result (no images, or no cutouts-only feature source)"}
    selected = json.loads(SPECTRUM_SELECTED.read_text())
    path = SPECTRUM_MODELS / selected["result"] / "predictor.joblib"
    result = ResultName.parse(selected["result"])
    head, features = result.head, result.features
    tags = {"git_commit": git_commit(), "data_hash": data_hash, "head": head, "features": features,
            "inputs": "images", "dataset": section(params, "data.source"), "target": SPECTRUM,
            "params_hash": params_hash(params["data"], params.get("mock"), params["split"], params["features"],
                                       params.get("encoder"), params["spectra"]),
            "model_hash": registry.file_hash(path),
            "code_hash": code_digest("galaxyprop.registry.spectrum_entry", "galaxyprop.spectra.heads"),
            f"val_{METRIC}": f"{selected['val'][METRIC]:.6g}"}
    entry = {"model": registry.model_name(SPECTRUM), "head": selected["result"], f"val_{METRIC}": selected["val"][METRIC]}
    existing = registry.find_version(SPECTRUM, {k: tags[k] for k in SAME_VERSION})
    if existing is not None:
        registry.set_candidate(SPECTRUM, str(existing.version))
        log.info("%s: unchanged since version %s; candidate points at it", entry["model"], existing.version)
        return {**entry, "version": str(existing.version)}
    metrics = {k: v for k, v in selected["test"].items() if isinstance(v, float)}
    with tracking.child_run(f"register:{selected['result']}:{SPECTRUM}", tags=tags):
        cutouts = model_inputs("images", prepared_split("test").head(5), features)
        version = register_spectrum(load_object(path, object), cutouts, tags, metrics,
                                    int(section(params, "spectra.n_samples")))
    log.info("registered %s version %s (%s, val %s = %.4g) as candidate", entry["model"], version,
             selected["result"], METRIC, selected["val"][METRIC])
    return {**entry, "version": version}


def headline(registered: dict, spectrum: dict, test_all: dict, calibration: dict, params: dict) -> dict:
    """The DVC metrics (reports/headline.json): per registered model, the validation selection metric and
    the test figures its gate reads: the target's metric, the 68 % coverage overall and on the field
    farthest from 0.683. The full tables (reports/metrics.json, ...) are outputs DVC shows on request."""
    nominal = NOMINAL["coverage_68"]
    out = {}
    for model, entry in registered.items():
        if entry.get("version") is None:
            continue
        target, head, metric = entry["target"], entry["head"], section(params, f"targets.{entry['target']}.metric")
        test = test_all[target][head]
        row = {f"val_{entry['selection_metric']}": entry[f"val_{entry['selection_metric']}"],
               f"test_{metric}": test[metric]}
        if "coverage_68" in test:
            fields = calibration.get(target, {}).get(head, {}).get("test", {}).get("calibrated", {})
            per_field = [v["coverage_68"] for f, v in fields.items() if f != "all"]
            row["test_coverage_68"] = test["coverage_68"]
            if per_field:
                row["test_coverage_68_worst_field"] = max(per_field, key=lambda c: abs(c - nominal))
        out[model] = row
    if spectrum.get("version") is not None and SPECTRUM_SELECTED.exists():
        from galaxyprop.registry.spectrum import METRIC, SPECTRUM

        selected = json.loads(SPECTRUM_SELECTED.read_text())
        out[SPECTRUM] = {f"val_{METRIC}": selected["val"][METRIC], f"test_{METRIC}": selected["test"][METRIC]}
    return out


def register_all(params: dict, data_hash: str, inputs: str) -> None:
    """Register every target's candidates and the spectrum model's, write reports/registered*.json, and
    mark the store with `inputs` (the fingerprint of what was registered) once all of it is done."""
    from galaxyprop.registry.stamp import mark_registered

    val_all = json.loads((VAL_METRICS).read_text())
    test_all = json.loads((METRICS).read_text())
    calibration = json.loads((BREAKDOWN).read_text()).get("calibration_by_field", {})
    candidates = [str(h) for h in section(params, "registry.candidate_heads")]
    check_candidate_heads(candidates)
    selection = section(params, "registry.selection")
    metric, rule = str(selection.get("metric", "crps")), CalibrationRule.from_params(selection)
    example = prepared_split("test").head(5)
    default_features = section(params, "features.default")
    registered = {}
    with tracking.stage_run(Stores.from_params(params), "register", params={"registry": params["registry"]}) as run:
        for target, val_metrics in val_all.items():
            target_metric = section(params, f"targets.{target}.metric")
            val_calibration = {h: by_split["val"]["calibrated"] for h, by_split in calibration.get(target, {}).items()}
            for kind, keys in candidates_by_kind(candidates, list(val_metrics), default_features).items():
                model = registry.model_id(target, kind)
                head, skipped = select_candidate(keys, val_metrics, val_calibration,
                                                 uncalibrated_heads(target, keys, default_features), metric, rule)
                for other, why in skipped.items():
                    log.info("%s: %s not selected: %s", model, other, why)
                if head is None:
                    log.warning("%s: no result passes the calibration rule; the registry's candidate stays where "
                                "it was", model)
                    registered[model] = {"model": registry.model_name(model), "target": target, "inputs": kind,
                                         "version": None, "skipped": skipped}
                    continue
                version = register(model, target, kind, head, val_metrics[head], val_calibration, test_all[target][head],
                                   example, params, metric, data_hash)
                registered[model] = {"model": registry.model_name(model), "target": target, "inputs": kind,
                                     "version": version, "head": head, "selection_metric": metric,
                                     f"val_{metric}": val_metrics[head][metric],
                                     f"val_{target_metric}": val_metrics[head][target_metric], "skipped": skipped}
        spectrum = register_spectrum_model(params, data_hash)
        write_json(registered, REGISTERED)
        write_json(spectrum, REGISTERED_SPECTRUM)
        write_json(headline(registered, spectrum, test_all, calibration, params), HEADLINE)
        mark_registered(run.info.experiment_id, inputs)
