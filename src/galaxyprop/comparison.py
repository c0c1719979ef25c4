"""The head comparison report: Markdown tables and the findings the project must show, from the
metrics dictionaries alone (pure; the pipeline stage writes and logs it)."""

from __future__ import annotations

from typing import Mapping

from galaxyprop.metrics import objective_value

COLUMNS = {"kcorr_r01": ["r2", "mae", "mse", "rmse", "sigma_nmad", "outlier_rate"],
           "z": ["sigma_mad", "eta", "bias", "bias_median", "r2", "mae"]}
TITLES = {"kcorr_r01": "K-correction K(^{0.1}r) (`kcorr_r01`)", "z": "Redshift (`z`)"}
IMAGE_INPUTS = ("image", "cutouts")   # what an image-only result learns from: embeddings or the cutouts


def table(rows: Mapping[str, Mapping[str, float]], columns: list[str], first: str = "head",
          extra: Mapping[str, str] | None = None) -> str:
    """A Markdown table: one row per key of `rows`, one column per metric (4 significant digits)."""
    heading = [first, *(["inputs"] if extra else []), *columns]
    lines = ["| " + " | ".join(heading) + " |", "|" + "---|" * len(heading)]
    for name, values in rows.items():
        cells = [f"`{name}`", *([extra.get(name, "")] if extra else []),
                 *(_format(values.get(c)) for c in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format(value) -> str:
    return "" if value is None else f"{value:.4g}"


def ranked(metrics: Mapping[str, Mapping[str, float]], metric: str) -> list[str]:
    """Heads best first on `metric`."""
    return sorted(metrics, key=lambda h: objective_value(metric, metrics[h][metric]))


def findings(metrics: Mapping[str, Mapping[str, float]], inputs: Mapping[str, str], metric: str) -> list[str]:
    """The comparisons the project is judged on, in words with their numbers."""
    order = ranked(metrics, metric)
    image_only = [h for h in order if inputs.get(h) in IMAGE_INPUTS]
    lines = [f"Best head on {metric}: `{order[0]}` ({metrics[order[0]][metric]:.4g})."]
    if image_only:
        best = image_only[0]
        value = metrics[best][metric]
        lines.append(f"Best image-only head: `{best}` ({metric} {value:.4g}).")
        for baseline in sorted(h for h in metrics if h.startswith("kcorrect_")):
            other = metrics[baseline][metric]
            better = objective_value(metric, value) < objective_value(metric, other)
            lines.append(f"It {'beats' if better else 'does not beat'} `{baseline}` (kcorrect at "
                         f"{inputs.get(baseline, '?')}: {metric} {other:.4g}; ratio {value / other:.3g}).")
        embedding = [h for h in image_only if inputs[h] == "image"]
        if embedding and "cnn" in metrics:
            value, cnn = metrics[embedding[0]][metric], metrics["cnn"][metric]
            lines.append(f"Best embedding head `{embedding[0]}` vs the supervised `cnn`: {metric} {value:.4g} vs "
                         f"{cnn:.4g} ({100 * (value - cnn) / abs(cnn):+.1f} %).")
    return lines


def field_table(by_field: Mapping[str, Mapping[str, Mapping[str, float]]], metric: str) -> str:
    """`metric` per head (rows) and survey field (columns), with each field's galaxy count."""
    fields = sorted({f for per_head in by_field.values() for f in per_head})
    rows = {head: {f: per_head[f][metric] for f in per_head} for head, per_head in by_field.items()}
    counts = {f: next(per_head[f]["n"] for per_head in by_field.values() if f in per_head) for f in fields}
    return table(rows, fields) + "\n\n" + "Test galaxies: " + ", ".join(f"{f} {counts[f]}" for f in fields) + "."


def confidence_table(by_confidence: Mapping[str, list[dict]], metric: str) -> str:
    """`metric` on the most confident kept fractions, per head with a spread."""
    rows = {head: {f"{100 * r['kept']:.0f} %": r[metric] for r in series}
            for head, series in by_confidence.items() if series}
    fractions = list(dict.fromkeys(k for r in rows.values() for k in r))
    return table(rows, fractions)


def comparison_markdown(metrics: Mapping, breakdown: Mapping, inputs: Mapping[str, str],
                        selection: Mapping[str, str], plots: Mapping[str, list[str]]) -> str:
    """The whole report: per target a ranked table, the findings, per-field and confidence tables,
    and links to the plots."""
    parts = ["# Head comparison on the test split",
             "Every head on the same test galaxies (`reports/metrics.json`); per-field, per-redshift-bin and "
             "confidence breakdowns in `reports/metrics_breakdown.json`. Inputs: `image` = image embeddings, "
             "`cutouts` = the images end to end, `photometry` = catalogue fluxes, `spec-z`/`photo-z` = kcorrect "
             "template fits at that redshift."]
    for target in (t for t in COLUMNS if t in metrics):
        metric = selection[target]
        order = ranked(metrics[target], metric)
        parts += [f"## {TITLES[target]}", f"Ranked by {metric}, the selection metric.",
                  table({h: metrics[target][h] for h in order}, COLUMNS[target], extra=inputs),
                  "\n".join(f"- {line}" for line in findings(metrics[target], inputs, metric))]
        if breakdown.get("by_field", {}).get(target):
            parts += [f"### {metric} per survey field", field_table(breakdown["by_field"][target], metric)]
        if any(breakdown.get("by_confidence", {}).get(target, {}).values()):
            parts += [f"### {metric} on the most confident galaxies (smallest predicted spread)",
                      confidence_table(breakdown["by_confidence"][target], metric)]
        parts += [f"![{p.rsplit('/', 1)[-1].removesuffix('.png')}]({p})" for p in plots.get(target, [])]
    return "\n\n".join(parts) + "\n"

