"""Stage compare: the head comparison report (reports/comparison.md) and its plots, logged to MLflow."""

from __future__ import annotations

import json
import logging

from galaxyprop.config import Stores, section
from galaxyprop.data.io import atomic_path
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.errors import exit_on_error
from galaxyprop.evaluation import plots
from galaxyprop.evaluation.comparison import comparison_markdown
from galaxyprop.evaluation.params import EVALUATION_SCHEMA
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.results import ResultName, inputs_of
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import BREAKDOWN, COMPARISON, COMPARISON_PLOTS, EVALUATION_PLOTS, METRICS, REPORTS

from common import registered_kind, save_figure
from stage import stage_params

log = logging.getLogger("compare")
PLOTS = COMPARISON_PLOTS
MC_DROPOUT = ("mlp", "cnn", "cnn_mm")   # heads whose spread is MC dropout: their confidence curve is plotted


@exit_on_error
def main() -> None:
    params = stage_params(EVALUATION_SCHEMA, TARGETS_SCHEMA, FEATURES_SCHEMA)
    metrics = json.loads((METRICS).read_text())
    breakdown = json.loads((BREAKDOWN).read_text())
    default = section(params, "features.default")
    selection = {target: section(params, f"targets.{target}.metric") for target in metrics}
    inputs = {key: inputs_of(key, default) for per_target in metrics.values() for key in per_target}
    kinds = {key: registered_kind(value) for key, value in inputs.items()}
    with tracking.stage_run(Stores.from_params(params), "compare"):
        figures = {}
        for target, metric in selection.items():
            paths = [PLOTS / f"{target}_{metric}.png", PLOTS / f"{target}_{metric}_vs_z.png"]
            save_figure(plots.metric_bars(metrics[target], metric, target), paths[0])
            save_figure(plots.metric_vs_redshift(breakdown["by_redshift_bin"][target], metric, target), paths[1])
            curves = {h: rows for h, rows in breakdown["by_confidence"].get(target, {}).items()
                      if rows and ResultName.parse(h).head in MC_DROPOUT}
            if curves:
                paths.append(PLOTS / f"{target}_{metric}_confidence.png")
                save_figure(plots.confidence_curve(curves, metric, target), paths[-1])
            paths += [p for p in (EVALUATION_PLOTS / f"{target}_pit_histograms.png",
                                  EVALUATION_PLOTS / f"{target}_pit_qq.png",
                                  EVALUATION_PLOTS / f"{target}_coverage_by_field.png") if p.exists()]
            figures[target] = [str(p.relative_to(REPORTS)) for p in paths]
        report = comparison_markdown(metrics, breakdown, inputs, selection, figures, kinds,
                                     breakdown.get("median_predictor"))
        with atomic_path(COMPARISON) as tmp:
            tmp.write_text(report)
        log.info("wrote %s", COMPARISON)
        tracking.log_artifacts([COMPARISON])
        tracking.log_artifacts([PLOTS], artifact_path="plots/comparison")


if __name__ == "__main__":
    main()
