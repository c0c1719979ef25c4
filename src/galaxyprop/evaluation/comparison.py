"""The head comparison report: Markdown tables and the findings the project must show, from the
metrics dictionaries alone (pure; the pipeline stage writes and logs it)."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.evaluation.metrics import objective_value
from galaxyprop.results import ResultName

#: The table columns of the redshift; every other target gets the regression ones.
COLUMNS = {"z": ["sigma_mad", "eta", "bias", "bias_median", "r2", "mae"]}
REGRESSION_COLUMNS = ["r2", "mae", "mse", "rmse", "sigma_nmad", "outlier_rate"]
TITLES = {"kcorr_r01": "K-correction K(^{0.1}r)", "z": "Redshift", "logmstar": "Stellar mass log10 M*",
          "zzsun": "Mass-weighted stellar metallicity log10 Z/Zsun", "age": "Mass-weighted stellar age (Gyr)",
          "logssfr": "Specific star-formation rate log10 sSFR (1/yr)"}
FIRST = ("z", "kcorr_r01")   # the report's order: these, then the other targets by name


def columns_of(target: str) -> list[str]:
    return COLUMNS.get(target, REGRESSION_COLUMNS)


def title_of(target: str) -> str:
    return f"{TITLES[target]} (`{target}`)" if target in TITLES else f"`{target}`"


def target_order(targets) -> list[str]:
    return sorted(targets, key=lambda t: (FIRST.index(t) if t in FIRST else len(FIRST), t))
IMAGE_INPUTS = ("image", "cutouts", "measured")   # what an image-only result learns from: embeddings, cutouts, sep


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


DENSITY_COLUMNS = ["pit_ks_raw", "pit_ks", "coverage_68_raw", "coverage_68", "coverage_95", "crps_raw", "crps",
                   "pit_w1", "pit_outlier_rate"]
SPREAD_METRIC = {"z": "sigma_mad"}   # point accuracy of a density's mean (every other target: sigma_nmad)


def spread_metric(target: str) -> str:
    return SPREAD_METRIC.get(target, "sigma_nmad")


def density_findings(metrics: Mapping[str, Mapping[str, float]], inputs: Mapping[str, str], target: str,
                     head: str = "clap") -> list[str]:
    """For each result of `head`: is it better calibrated (lower PIT KS and W1) than every other head
    with densities, is its 68 % coverage within 3 points, and how far is its mean from the best
    point head on the same inputs (image-only heads together)?"""
    with_density = [h for h in metrics if "pit_ks" in metrics[h]]
    ours = [h for h in with_density if ResultName.parse(h).head == head]
    others = [h for h in with_density if h not in ours]
    point = spread_metric(target)
    lines = []
    for name in ours:
        parts = []
        for metric in ("pit_ks", "pit_w1"):
            value = metrics[name][metric]
            if others:
                rival = min(others, key=lambda h: metrics[h][metric])
                verdict = "below" if value < metrics[rival][metric] else "NOT below"
                parts.append(f"{metric} {value:.4g}, {verdict} every other head's (best: `{rival}` "
                             f"{metrics[rival][metric]:.4g})")
            else:
                parts.append(f"{metric} {value:.4g}")
        coverage = 100 * metrics[name]["coverage_68"]
        parts.append(f"68 % coverage {coverage:.1f} % ({'within' if abs(coverage - 68.27) <= 3 else 'OUTSIDE'} "
                     f"±3 points), 95 % coverage {100 * metrics[name]['coverage_95']:.1f} %")
        group = IMAGE_INPUTS if inputs.get(name) in IMAGE_INPUTS else (inputs.get(name),)
        rivals = [h for h in metrics if h not in ours and inputs.get(h) in group and point in metrics[h]]
        if rivals:
            best = min(rivals, key=lambda h: metrics[h][point])
            ratio = metrics[name][point] / metrics[best][point]
            parts.append(f"{point} of its mean {metrics[name][point]:.4g} vs the best point head on the same "
                         f"inputs `{best}` {metrics[best][point]:.4g} ({100 * (ratio - 1):+.1f} %, "
                         f"{'within' if ratio <= 1.10 else 'BEYOND'} 10 %)")
        lines.append(f"`{name}`: " + "; ".join(parts) + ".")
    return lines


def density_section(metrics: Mapping[str, Mapping[str, float]], inputs: Mapping[str, str], target: str,
                    n_test: int | None = None) -> list[str]:
    """The calibration table of the heads with densities (best PIT KS first) and its findings."""
    heads = sorted((h for h in metrics if "pit_ks" in metrics[h]), key=lambda h: metrics[h]["pit_ks"])
    if not heads:
        return []
    columns = [*DENSITY_COLUMNS, spread_metric(target), f"{spread_metric(target)}_mode"]
    noise = (f" With {n_test} test galaxies, perfectly calibrated densities still give a PIT KS statistic up to "
             f"{1.358 / n_test ** 0.5:.3f} (95 %): differences below that are noise." if n_test else "")
    return ["### Calibration of the densities",
            "A calibrated density puts the truth below its q-quantile a fraction q of the time: PIT uniform "
            "(KS, CvM, W1 near 0), 68/95 % coverage at 0.683/0.954; CRPS rewards calibration and sharpness. "
            "Every head's densities are recalibrated on the validation split (`_raw`: the head's own, before)." + noise,
            table({h: metrics[h] for h in heads}, columns, extra=inputs),
            "\n".join(f"- {line}" for line in density_findings(metrics, inputs, target))]


def field_calibration_table(calibration: Mapping[str, Mapping]) -> str:
    """Per head (rows) and survey field: the test split's 68 % coverage raw -> calibrated, the 95 %
    coverage and the PIT KS against its noise level."""
    fields = list(dict.fromkeys(f for c in calibration.values() for f in c["test"]["calibrated"]))
    lines = ["| head | " + " | ".join(f"{f}: 68 % raw → cal, 95 %, PIT KS (noise)" for f in fields) + " |",
             "|" + "---|" * (len(fields) + 1)]
    for head, by_split in calibration.items():
        cells = []
        for field in fields:
            cal, raw = by_split["test"]["calibrated"].get(field), by_split["test"]["raw"].get(field)
            cells.append("" if cal is None else f"{raw['coverage_68']:.3f} → {cal['coverage_68']:.3f}, "
                         f"{cal['coverage_95']:.3f}, {cal['pit_ks']:.3f} ({cal['ks_noise']:.3f})")
        lines.append(f"| `{head}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: The kinds of input a result takes, in the report's order; the catalogue on the images' bands is a reference.
KIND_ORDER = ("multimodal", "images", "catalogue", "catalogue on g,r,z", "baseline")
GRZ_REFERENCE = "photometry_grz"


def kind_of(key: str, kinds: Mapping[str, str | None], inputs: Mapping[str, str]) -> str:
    """A result's row group: its registered kind, the g,r,z catalogue reference, or a baseline."""
    if inputs.get(key) == GRZ_REFERENCE:
        return "catalogue on g,r,z"
    return kinds.get(key) or "baseline"


def grouped(metrics: Mapping[str, Mapping[str, float]], kinds: Mapping[str, str | None],
            inputs: Mapping[str, str], metric: str) -> dict[str, list[str]]:
    """Results by kind of input (KIND_ORDER), best first within each."""
    groups: dict[str, list[str]] = {kind: [] for kind in KIND_ORDER}
    for key in ranked(metrics, metric):
        groups[kind_of(key, kinds, inputs)].append(key)
    return {kind: keys for kind, keys in groups.items() if keys}


def kind_findings(metrics: Mapping[str, Mapping[str, float]], by_field: Mapping[str, Mapping[str, Mapping]],
                  groups: Mapping[str, list[str]], metric: str) -> list[str]:
    """Do the images add to the catalogue (best multimodal vs best catalogue-only, overall and per field),
    and how close do the cutouts alone come to the catalogue on their own bands and on every band?"""
    best = {kind: keys[0] for kind, keys in groups.items()}
    lines = []

    def ratio(a: str, b: str) -> str:
        overall = metrics[a][metric] / metrics[b][metric]
        fields = sorted(set(by_field.get(a, {})) & set(by_field.get(b, {})))
        per_field = ", ".join(f"{f} {by_field[a][f][metric] / by_field[b][f][metric]:.3f}" for f in fields)
        return f"ratio {overall:.3f}" + (f" (by field: {per_field})" if per_field else "")

    if "multimodal" in best and "catalogue" in best:
        a, b = best["multimodal"], best["catalogue"]
        better = objective_value(metric, metrics[a][metric]) < objective_value(metric, metrics[b][metric])
        lines.append(f"Images {'add to' if better else 'do NOT add to'} the catalogue: best multimodal `{a}` "
                     f"{metric} {metrics[a][metric]:.4g} vs best catalogue-only `{b}` {metrics[b][metric]:.4g}, "
                     f"{ratio(a, b)}.")
    if "images" in best:
        a = best["images"]
        for reference, words in (("catalogue on g,r,z", "the catalogue on the images' bands"),
                                 ("catalogue", "the full catalogue")):
            if reference in best:
                b = best[reference]
                lines.append(f"Best image-only `{a}` ({metric} {metrics[a][metric]:.4g}) vs {words} `{b}` "
                             f"({metrics[b][metric]:.4g}): {ratio(a, b)}.")
    return lines


def comparison_markdown(metrics: Mapping, breakdown: Mapping, inputs: Mapping[str, str],
                        selection: Mapping[str, str], plots: Mapping[str, list[str]],
                        kinds: Mapping[str, str | None] | None = None,
                        medians: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """The whole report: per target a table ranked within each kind of input (multimodal, images,
    catalogue, references), the findings, per-field and confidence tables, and links to the plots.
    `medians`: per target, the metrics of predicting the training median for every galaxy."""
    kinds, medians = kinds or {}, medians or {}
    parts = ["# Head comparison on the test split",
             "Every head on the same test galaxies (`reports/metrics.json`); per-field, per-redshift-bin and "
             "confidence breakdowns in `reports/metrics_breakdown.json`. Inputs: `image` = image embeddings, "
             "`cutouts` = the images end to end, `measured` = sep photometry and shapes measured on the cutouts, "
             "`photometry` = catalogue fluxes (`photometry_grz`: on the images' g, r, z alone), `a+b` = both "
             "side by side, `cutouts+photometry` = the multimodal CNN, `spec-z`/`photo-z` = kcorrect template fits "
             "at that redshift. Rows are grouped by what a user must bring: `multimodal` (cutouts and catalogue; "
             "registered as galaxyprop-<target>), `images` (cutouts alone; -images), `catalogue` (-catalogue)."]
    for target in target_order(metrics):
        metric = selection[target]
        groups = grouped(metrics[target], kinds, inputs, metric)
        order = [key for keys in groups.values() for key in keys]
        labels = {key: f"{kind} · {inputs.get(key, '')}" for kind, keys in groups.items() for key in keys}
        by_field = breakdown.get("by_field", {}).get(target, {})
        parts += [f"## {title_of(target)}", f"Ranked by {metric}, the selection metric, within each kind of input.",
                  table({h: metrics[target][h] for h in order}, columns_of(target), extra=labels),
                  "\n".join(f"- {line}" for line in kind_findings(metrics[target], by_field, groups, metric)
                            + findings(metrics[target], inputs, metric)
                            + median_findings(metrics[target], groups, medians.get(target), metric))]
        fields = next(iter(breakdown.get("by_field", {}).get(target, {}).values()), {})
        parts += density_section(metrics[target], inputs, target, sum(f["n"] for f in fields.values()) or None)
        if breakdown.get("calibration_by_field", {}).get(target):
            parts += ["### Interval coverage per survey field (test split)",
                      "The served [q16, q84] should cover 0.683 and [q02, q98] 0.954 of the truths on every field; "
                      "the binomial standard error of a coverage on n galaxies is sqrt(0.683 x 0.317 / n) "
                      "(0.021 at n = 500).",
                      field_calibration_table(breakdown["calibration_by_field"][target])]
        if breakdown.get("by_field", {}).get(target):
            parts += [f"### {metric} per survey field", field_table(breakdown["by_field"][target], metric)]
        if any(breakdown.get("by_confidence", {}).get(target, {}).values()):
            parts += [f"### {metric} on the most confident galaxies (smallest predicted spread)",
                      confidence_table(breakdown["by_confidence"][target], metric)]
        parts += [f"![{p.rsplit('/', 1)[-1].removesuffix('.png')}]({p})" for p in plots.get(target, [])]
    return "\n\n".join(parts) + "\n"



def median_findings(metrics: Mapping[str, Mapping[str, float]], groups: Mapping[str, list[str]],
                    median: Mapping[str, float] | None, metric: str) -> list[str]:
    """The best result of each kind of input against predicting the training median for everyone."""
    if not median or metric not in median:
        return []
    lines = []
    for kind, keys in groups.items():
        if keys and kind != "references" and metric in metrics[keys[0]]:
            value = metrics[keys[0]][metric]
            lines.append(f"Best {kind} `{keys[0]}` vs the median predictor: {metric} {value:.4g} vs "
                         f"{median[metric]:.4g} (ratio {value / median[metric]:.3g}).")
    return lines
