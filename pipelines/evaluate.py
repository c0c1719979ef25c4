"""Stage evaluate: every head on the test (and validation) split, metrics and plots."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from common import PLOTS, PREDICTIONS, REPORTS, metrics_key, save_figure

from galaxyprop import plots, tracking
from galaxyprop.config import Stores, load_params, section
from galaxyprop.data import schema
from galaxyprop.data.io import write_json
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.metrics import quantile_bins, target_metrics

log = logging.getLogger("evaluate")


def split_metrics(frame: pd.DataFrame, target: str, outlier: float, eta: float) -> tuple[dict, int]:
    """Metrics over the rows with a finite prediction, and how many rows had none."""
    ok = np.isfinite(frame["prediction"].to_numpy())
    if not ok.any():
        raise GalaxypropError(f"no finite prediction for {target} in split {frame[schema.SPLIT].iloc[0]}")
    return target_metrics(target, frame["true"][ok], frame["prediction"][ok], outlier, eta), int((~ok).sum())


@exit_on_error
def main() -> None:
    params = load_params()
    eta, n_bins = section(params, "evaluation.eta_threshold"), section(params, "evaluation.n_redshift_bins")
    default_features = section(params, "features.default")
    test_metrics, val_metrics, by_bin, failures = {}, {}, {}, {}
    with tracking.stage_run(Stores.from_params(params), "evaluate", params={"evaluation": params["evaluation"]}):
        for target in schema.TARGETS:
            files = sorted((PREDICTIONS / target).glob("*.parquet"))
            if not files:
                continue
            outlier = section(params, f"targets.{target}.outlier_threshold")
            residuals = {}
            for path in files:
                head, predictions = metrics_key(path.stem, default_features), pd.read_parquet(path)
                val = predictions[predictions[schema.SPLIT] == "val"]
                test = predictions[predictions[schema.SPLIT] == "test"]
                val_metrics.setdefault(target, {})[head], _ = split_metrics(val, target, outlier, eta)
                test_metrics.setdefault(target, {})[head], n_failed = split_metrics(test, target, outlier, eta)
                failures.setdefault(target, {})[head] = n_failed
                test = test[np.isfinite(test["prediction"])]
                edges, bins = quantile_bins(test[schema.REDSHIFT].to_numpy(), n_bins)
                by_bin.setdefault(target, {})[head] = [
                    {"z_low": float(edges[b]), "z_high": float(edges[b + 1]), "n": int((bins == b).sum()),
                     **target_metrics(target, test["true"][bins == b], test["prediction"][bins == b], outlier, eta)}
                    for b in range(n_bins) if (bins == b).sum() > 1]
                residuals[head] = (test[schema.REDSHIFT].to_numpy(), (test["prediction"] - test["true"]).to_numpy())
                save_figure(plots.prediction_vs_truth(test["true"].to_numpy(), test["prediction"].to_numpy(), target,
                                                      f"{head}: {target} on the test split"),
                            PLOTS / f"{target}_{head}_pred_vs_true.png")
            save_figure(plots.residual_vs_redshift(residuals, target), PLOTS / f"{target}_residual_vs_z.png")
            for head, metrics in test_metrics[target].items():
                log.info("%s %-15s %s", target, head, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if not test_metrics:
            raise GalaxypropError(f"no predictions under {PREDICTIONS}: run the train stages first")
        write_json(test_metrics, REPORTS / "metrics.json")
        write_json(val_metrics, REPORTS / "val_metrics.json")
        write_json({"by_redshift_bin": by_bin, "failed_predictions": failures}, REPORTS / "metrics_breakdown.json")
        tracking.log_metrics(test_metrics, prefix="test.")
        tracking.log_metrics(val_metrics, prefix="val.")
        tracking.log_artifacts([REPORTS / "metrics.json", REPORTS / "metrics_breakdown.json"])
        tracking.log_artifacts([PLOTS], artifact_path="plots")


if __name__ == "__main__":
    main()
