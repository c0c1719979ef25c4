"""Stage evaluate: every head on the test (and validation) split, metrics and plots; for the heads with
densities the calibrated (served) and raw densities, overall and per survey field."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from galaxyprop.calibration import NOMINAL, calibration_summary
from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.density_file import read_densities
from galaxyprop.data.io import write_json
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.evaluation import curves, plots
from galaxyprop.evaluation.curves import write_curve
from galaxyprop.evaluation.densities import cdf_at, mode
from galaxyprop.evaluation.metrics import density_metrics, quantile_bins, target_metrics
from galaxyprop.evaluation.params import EVALUATION_SCHEMA
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.heads.params import TRAIN_SCHEMA
from galaxyprop.results import metrics_key
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import (
    BREAKDOWN,
    COVERAGE_CURVES,
    EVALUATION_PLOTS,
    METRICS,
    PIT_CURVES,
    PREDICTIONS,
    REDSHIFT_CURVES,
    VAL_METRICS,
    densities_path,
    result_files,
)

from common import prepared_split, save_figure
from stage import stage_params

log = logging.getLogger("evaluate")
#: Point metrics of each density's mode, reported beside those of its mean (the head's prediction).
MODE_METRICS = {schema.REDSHIFT: ("sigma_mad", "eta", "bias")}
OTHER_MODE_METRICS = ("sigma_nmad", "mse")   # of every other target


def split_metrics(frame: pd.DataFrame, target: str, outlier: float, eta: float) -> tuple[dict, int]:
    """Metrics over the rows with a finite prediction, and how many rows had none."""
    ok = np.isfinite(frame["prediction"].to_numpy())
    if not ok.any():
        raise GalaxypropError(f"no finite prediction for {target} in split {frame[schema.SPLIT].iloc[0]}")
    return target_metrics(target, frame["true"][ok], frame["prediction"][ok], outlier, eta), int((~ok).sum())


def median_predictor(target: str, outlier: float, eta: float) -> dict:
    """The test metrics of predicting the training median for every galaxy: what a head must beat."""
    median = float(np.median(prepared_split("train")[target]))
    truth = prepared_split("test")[target].to_numpy(float)
    return {"value": median, **target_metrics(target, truth, np.full(len(truth), median), outlier, eta)}


def by_redshift_bin(test: pd.DataFrame, target: str, n_bins: int, outlier: float, eta: float) -> list[dict]:
    edges, bins = quantile_bins(test[schema.REDSHIFT].to_numpy(), n_bins)
    return [{"z_low": float(edges[b]), "z_high": float(edges[b + 1]), "n": int((bins == b).sum()),
             **target_metrics(target, test["true"][bins == b], test["prediction"][bins == b], outlier, eta)}
            for b in range(n_bins) if (bins == b).sum() > 1]


def by_field(test: pd.DataFrame, target: str, outlier: float, eta: float) -> dict:
    """Metrics per photometric system (survey field) of the test galaxies."""
    return {str(field): {"n": len(rows), **target_metrics(target, rows["true"], rows["prediction"], outlier, eta)}
            for field, rows in test.groupby(schema.PHOTSYS) if len(rows) > 1}


def by_confidence(test: pd.DataFrame, target: str, kept: list[float], outlier: float, eta: float) -> list[dict]:
    """Metrics on the most confident (smallest spread) fractions of the test galaxies; empty for a
    head without a usable spread."""
    spread = test["spread"].to_numpy(float)
    if not np.isfinite(spread).all() or np.ptp(spread) == 0:
        return []
    order = np.argsort(spread, kind="stable")
    rows = []
    for fraction in kept:
        keep = test.iloc[order[:max(2, int(round(fraction * len(test))))]]
        rows.append({"kept": float(fraction), "n": len(keep), "max_spread": float(keep["spread"].max()),
                     **target_metrics(target, keep["true"], keep["prediction"], outlier, eta)})
    return rows


#: Density metrics of the head's own densities, reported beside those of the served (calibrated) ones.
RAW_METRICS = ("pit_ks", "coverage_68", "coverage_95", "crps")


def density_rows(path, split: pd.DataFrame, target: str, outlier: float, eta: float,
                 fields: pd.Series) -> tuple[dict, np.ndarray, np.ndarray, dict]:
    """One split's density metrics of a model (calibrated, with the raw ones as `<metric>_raw`), its
    mode's point metrics, the calibrated and raw PIT values, and the calibration per survey field."""
    name = split[schema.SPLIT].iloc[0]
    ids, pdf, grid = read_densities(path, split=name)
    _, raw, _ = read_densities(path, split=name, raw=True)
    truth = split.set_index(schema.ID)["true"]
    missing = np.setdiff1d(ids, truth.index)
    if len(missing):
        raise GalaxypropError(f"{path}: {len(missing)} ids (e.g. {missing[0]}) are not {name} galaxies with predictions")
    y = truth.loc[ids].to_numpy(float)
    at_mode = target_metrics(target, y, mode(pdf, grid), outlier, eta)
    raw_metrics = density_metrics(raw, grid, y)
    metrics = {**density_metrics(pdf, grid, y), **{f"{m}_raw": raw_metrics[m] for m in RAW_METRICS},
               **{f"{m}_mode": at_mode[m] for m in MODE_METRICS.get(target, OTHER_MODE_METRICS)}}
    codes = fields.loc[ids].to_numpy()
    by_field = {"calibrated": calibration_summary(pdf, grid, y, codes), "raw": calibration_summary(raw, grid, y, codes)}
    return metrics, cdf_at(pdf, grid, y), cdf_at(raw, grid, y), by_field


@exit_on_error
def main() -> None:
    params = stage_params(EVALUATION_SCHEMA, TARGETS_SCHEMA, TRAIN_SCHEMA, FEATURES_SCHEMA)
    eta, n_bins = section(params, "evaluation.eta_threshold"), section(params, "evaluation.n_redshift_bins")
    kept, default_features = section(params, "evaluation.kept_fractions"), section(params, "features.default")
    test_metrics, val_metrics, failures = {}, {}, {}
    breakdown: dict = {"by_redshift_bin": {}, "by_field": {}, "by_confidence": {}, "calibration_by_field": {}}
    fields = pd.concat([(split.set_index(schema.ID)[schema.PHOTSYS] if schema.PHOTSYS in split
                         else pd.Series("*", index=split[schema.ID])) for split in map(prepared_split, ("val", "test"))])
    with tracking.stage_run(Stores.from_params(params), "evaluate", params={"evaluation": params["evaluation"]}) as run:
        for target in section(params, "train.targets"):
            files = result_files(PREDICTIONS, target, ".parquet")
            if not files:
                continue
            outlier = section(params, f"targets.{target}.outlier_threshold")
            residuals, pits, raw_pits = {}, {}, {}
            for path in files:
                head, predictions = metrics_key(path.stem, default_features), pd.read_parquet(path)
                if predictions.empty:
                    log.info("%s: no predictions (the stage was skipped for this source)", path)
                    continue
                val = predictions[predictions[schema.SPLIT] == "val"]
                test = predictions[predictions[schema.SPLIT] == "test"]
                val_metrics.setdefault(target, {})[head], _ = split_metrics(val, target, outlier, eta)
                test_metrics.setdefault(target, {})[head], n_failed = split_metrics(test, target, outlier, eta)
                failures.setdefault(target, {})[head] = n_failed
                test = test[np.isfinite(test["prediction"])]
                densities = densities_path(target, path.stem)
                if densities.exists():
                    rows, _, _, val_fields = density_rows(densities, val, target, outlier, eta, fields)
                    val_metrics[target][head].update(rows)
                    rows, pits[head], raw_pits[head], test_fields = density_rows(densities, test, target, outlier,
                                                                                 eta, fields)
                    test_metrics[target][head].update(rows)
                    breakdown["calibration_by_field"].setdefault(target, {})[head] = {"test": test_fields,
                                                                                      "val": val_fields}
                test = test.assign(**{schema.PHOTSYS: fields.loc[test[schema.ID]].to_numpy()})
                for name, rows in (("by_redshift_bin", by_redshift_bin(test, target, n_bins, outlier, eta)),
                                   ("by_field", by_field(test, target, outlier, eta)),
                                   ("by_confidence", by_confidence(test, target, kept, outlier, eta))):
                    breakdown[name].setdefault(target, {})[head] = rows
                residuals[head] = (test[schema.REDSHIFT].to_numpy(), (test["prediction"] - test["true"]).to_numpy())
                save_figure(plots.prediction_vs_truth(test["true"].to_numpy(), test["prediction"].to_numpy(), target,
                                                      f"{head}: {target} on the test split"),
                            EVALUATION_PLOTS / f"{target}_{head}_pred_vs_true.png")
            if target not in test_metrics:    # every stage of it skipped: the source has no column for it
                log.info("%s: no predictions from any head (skipped for this source)", target)
                continue
            save_figure(plots.residual_vs_redshift(residuals, target), EVALUATION_PLOTS / f"{target}_residual_vs_z.png")
            metric = section(params, f"targets.{target}.metric")
            write_curve(curves.metric_vs_redshift(breakdown["by_redshift_bin"][target], metric),
                        REDSHIFT_CURVES / f"{target}_{metric}.csv")
            if pits:
                save_figure(plots.pit_histograms(pits, target, raw_pits), EVALUATION_PLOTS / f"{target}_pit_histograms.png")
                save_figure(plots.pit_qq(pits, target), EVALUATION_PLOTS / f"{target}_pit_qq.png")
                save_figure(plots.coverage_by_field(breakdown["calibration_by_field"][target], target),
                            EVALUATION_PLOTS / f"{target}_coverage_by_field.png")
                write_curve(curves.pit_histogram(pits), PIT_CURVES / f"{target}.csv")
                write_curve(curves.coverage(breakdown["calibration_by_field"][target], NOMINAL),
                            COVERAGE_CURVES / f"{target}.csv")
            for head, metrics in test_metrics.get(target, {}).items():
                log.info("%s %-15s %s", target, head, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            if target in test_metrics:
                breakdown.setdefault("median_predictor", {})[target] = median_predictor(target, outlier, eta)
        if not test_metrics:
            raise GalaxypropError(f"no predictions under {PREDICTIONS}: run the train stages first")
        write_json(test_metrics, METRICS)
        write_json(val_metrics, VAL_METRICS)
        write_json({**breakdown, "failed_predictions": failures}, BREAKDOWN)
        tracking.log_metrics(test_metrics, prefix="test.")
        tracking.log_metrics(val_metrics, prefix="val.")
        # each result's own train run gets the figures its served model gives, under the keys every head shares
        served = {(head, target): {**tracking.result_metrics("val", val_metrics[target].get(head, {})),
                                   **tracking.result_metrics("test", values)}
                  for target, heads in test_metrics.items() for head, values in heads.items()}
        missing = tracking.log_to_result_runs(run.info.experiment_id, served)
        if missing:
            log.info("no finished train run to log the served metrics of %s to (restored from DVC's run cache?)",
                     ", ".join(missing))
        tracking.log_artifacts([METRICS, BREAKDOWN])
        tracking.log_artifacts([EVALUATION_PLOTS], artifact_path="plots")


if __name__ == "__main__":
    main()
