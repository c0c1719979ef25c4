"""Figures of the results people look at (metrics, PITs, coverage, drift, adaptation): pure functions of
arrays that return matplotlib figures. The data's own figures (cutouts, losses, embeddings) are in
`evaluation.data_plots`, which needs no metrics."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from galaxyprop.evaluation.metrics import quantile_bins


def prediction_vs_truth(y_true: np.ndarray, y_pred: np.ndarray, label: str, title: str) -> Figure:
    """Density of predicted against true values, with the 1:1 line."""
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = np.percentile(np.concatenate([y_true, y_pred]), [0.5, 99.5])
    pad = 0.05 * (hi - lo)
    extent = (lo - pad, hi + pad)
    ax.hexbin(y_true, y_pred, gridsize=60, extent=extent * 2, mincnt=1, bins="log", cmap="viridis")
    ax.plot(extent, extent, color="crimson", lw=1)
    ax.set(xlim=extent, ylim=extent, xlabel=f"true {label}", ylabel=f"predicted {label}", title=title)
    fig.tight_layout()
    return fig


def residual_vs_redshift(residuals: dict[str, tuple[np.ndarray, np.ndarray]], label: str,
                         n_bins: int = 12) -> Figure:
    """Median residual and its 16-84 % band in redshift bins, one line per head ({head: (z, residual)})."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for head, (redshift, residual) in residuals.items():
        edges, which = quantile_bins(redshift, n_bins)
        centres = 0.5 * (edges[1:] + edges[:-1])
        stats = np.array([np.percentile(residual[which == b], [16, 50, 84]) if (which == b).any()
                          else [np.nan] * 3 for b in range(n_bins)])
        ax.plot(centres, stats[:, 1], marker="o", ms=3, label=head)
        ax.fill_between(centres, stats[:, 0], stats[:, 2], alpha=0.15)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="spectroscopic redshift", ylabel=f"residual in {label} (pred - true)",
           title=f"{label}: residual vs redshift (median, 16-84 %)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def metric_vs_redshift(by_bin: dict[str, list[dict]], metric: str, label: str) -> Figure:
    """A metric in equal-count redshift bins, one line per head ({head: [{z_low, z_high, metric}]})."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for head, rows in by_bin.items():
        centres = [0.5 * (row["z_low"] + row["z_high"]) for row in rows]
        ax.plot(centres, [row[metric] for row in rows], marker="o", ms=3, label=head,
                ls="--" if head.startswith("kcorrect") else "-")
    ax.set(xlabel="spectroscopic redshift", ylabel=metric, title=f"{label}: {metric} per redshift bin (test)")
    if metric in ("mse", "eta", "outlier_rate"):
        ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def confidence_curve(by_confidence: dict[str, list[dict]], metric: str, label: str) -> Figure:
    """A metric on the most confident fraction of the test set (smallest spreads kept), per head."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for head, rows in by_confidence.items():
        ax.plot([100 * row["kept"] for row in rows], [row[metric] for row in rows], marker="o", label=head)
    ax.invert_xaxis()
    ax.set(xlabel="kept fraction of the test set (%), most confident first", ylabel=metric,
           title=f"{label}: {metric} after dropping the least confident")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def metric_bars(metrics: dict[str, dict[str, float]], metric: str, label: str) -> Figure:
    """One bar per head for `metric` ({head: {metric: value}}), best first."""
    heads = sorted(metrics, key=lambda h: metrics[h][metric], reverse=metric == "r2")
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(heads) + 1.2))
    ax.barh(heads[::-1], [metrics[h][metric] for h in heads[::-1]],
            color=["0.6" if h.startswith("kcorrect") else "tab:blue" for h in heads[::-1]])
    ax.set(xlabel=metric, title=f"{label}: {metric} on the test split")
    fig.tight_layout()
    return fig


def pit_histograms(pits: dict[str, np.ndarray], label: str, raw: dict[str, np.ndarray] | None = None,
                   n_bins: int = 20) -> Figure:
    """One PIT histogram per head (a calibrated density gives a flat one), with the uniform level and
    its 2-sigma Poisson band; `raw`: the PITs before calibration, drawn as an outline."""
    n = len(pits)
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for ax, (head, pit) in zip(axes.ravel(), pits.items(), strict=False):  # spare axes hidden below
        expected = len(pit) / n_bins
        ax.hist(np.clip(pit, 0, 1), bins=n_bins, range=(0, 1), color="steelblue", label="calibrated")
        if raw is not None and head in raw:
            ax.hist(np.clip(raw[head], 0, 1), bins=n_bins, range=(0, 1), histtype="step", color="tab:red",
                    label="raw")
        ax.axhline(expected, color="k", lw=1)
        ax.axhspan(expected - 2 * np.sqrt(expected), expected + 2 * np.sqrt(expected), color="k", alpha=0.1)
        ax.set(title=head, xlabel="PIT", ylim=(0, 4 * expected))
    axes.ravel()[0].legend(fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{label}: PIT histograms on the test split (raw beyond the top is clipped)")
    fig.tight_layout()
    return fig


def coverage_by_field(calibration: dict[str, dict], label: str) -> Figure:
    """The test split's 68 % and 95 % interval coverage per head and survey field, raw (open) and
    calibrated (filled), against the nominal levels and their 2-sigma binomial bands."""
    from galaxyprop.calibration import NOMINAL

    heads = list(calibration)
    fields = list(dict.fromkeys(f for h in heads for f in calibration[h]["test"]["calibrated"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(heads) * len(fields) + 1.6), sharey=True)
    for ax, key in zip(axes, ("coverage_68", "coverage_95"), strict=True):
        labels, y = [], 0
        for head in heads:
            for i, name in enumerate(fields):
                test = calibration[head]["test"]
                if name not in test["calibrated"]:
                    continue
                cal, raw = test["calibrated"][name], test["raw"][name]
                colour = f"C{i}"
                ax.plot(raw[key], y, "o", mfc="none", color=colour)
                ax.plot(cal[key], y, "o", color=colour)
                ax.plot([raw[key], cal[key]], [y, y], color=colour, lw=0.8)
                labels.append(f"{head} {name} (n={cal['n']})")
                y += 1
        p = NOMINAL[key]
        n = min(calibration[h]["test"]["calibrated"][f]["n"] for h in heads for f in calibration[h]["test"]["calibrated"])
        ax.axvline(p, color="k", lw=1)
        ax.axvspan(p - 2 * np.sqrt(p * (1 - p) / n), p + 2 * np.sqrt(p * (1 - p) / n), color="k", alpha=0.1)
        ax.set(xlabel=f"{key} (open: raw, filled: calibrated)", yticks=range(len(labels)), xlim=(0, 1))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
    fig.suptitle(f"{label}: interval coverage on the test split per survey field (band: 2 sigma at the smallest n)")
    fig.tight_layout()
    return fig


def pit_qq(pits: dict[str, np.ndarray], label: str) -> Figure:
    """Quantiles of each head's PIT against the uniform's: the diagonal is perfect calibration;
    below it at the start and above at the end means over-confident densities."""
    fig, ax = plt.subplots(figsize=(5, 5))
    q = np.linspace(0, 1, 101)
    for head, pit in pits.items():
        ax.plot(q, np.quantile(np.clip(pit, 0, 1), q), label=head)
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--")
    ax.set(xlabel="uniform quantile", ylabel="PIT quantile", title=f"{label}: PIT QQ plot", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def drift_scores(verdicts: dict[str, dict], method: str, p_value: bool) -> Figure:
    """Per-column drift of each comparison (photometry and predictions) against its threshold
    (p-values as -log10 p: longer bars drift more), and each comparison's embedding drift score."""
    names = list(verdicts)
    columns = list(dict.fromkeys(c for v in verdicts.values() for c in v.get("column_scores", {})))
    predicted = list(dict.fromkeys(t for v in verdicts.values() for t in v.get("prediction_drift", {})))
    rows = columns + [f"prediction {t}" for t in predicted]

    def shown(score):
        return -np.log10(max(score, 1e-300)) if p_value and score is not None else score

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.32 * len(rows) * len(names) / 2 + 2.5),
                                      gridspec_kw={"width_ratios": [3, 1]})
    height = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        v = verdicts[name]
        scores = [v.get("column_scores", {}).get(c) for c in columns]
        scores += [v.get("prediction_drift", {}).get(t, {}).get("score") for t in predicted]
        bars = left.barh(np.arange(len(rows)) + i * height, [np.nan if x is None else shown(x) for x in scores],
                         height, label=name)
        left.axvline(shown(v["settings"]["column_threshold"]), color=bars.patches[0].get_facecolor(), ls="--", lw=1)
    left.set_yticks(np.arange(len(rows)) + 0.4 - height / 2, rows)
    left.invert_yaxis()
    if p_value:
        left.set_xscale("symlog", linthresh=10)
    left.set(xlabel=f"-log10 p ({method})" if p_value else f"drift score ({method})",
             title="per-column drift (dashed: each comparison's threshold)")
    left.legend(fontsize=7)
    embedded = [n for n in names if verdicts[n].get("embedding_drift_score") is not None]
    right.bar(range(len(embedded)), [verdicts[n]["embedding_drift_score"] for n in embedded],
              color=["tab:red" if verdicts[n]["embedding_detected"] else "tab:green" for n in embedded])
    for threshold in {verdicts[n].get("embedding_threshold") for n in embedded} - {None}:
        right.axhline(threshold, color="k", ls="--", lw=1)
    right.set_xticks(range(len(embedded)), embedded, rotation=30, ha="right", fontsize=7)
    right.set(ylabel="embedding drift score (dashed: threshold)", title="image embeddings\n(red: drift detected)")
    fig.tight_layout()
    return fig


def adaptation_bars(result: dict, targets: list[str]) -> Figure:
    """Per target, each training variant's metric on each field's test galaxies; the legend gives how
    well a classifier tells the fields apart from the variant's last hidden layer (0.5: not at all)."""
    if not targets:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no adaptation: {result.get('skipped', 'nothing to adapt')}", ha="center", va="center")
        return fig
    fig, axes = plt.subplots(1, len(targets), figsize=(5.5 * len(targets), 4), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        entry = result[target]
        metric = entry["metric"]
        variants = [v for v in entry if v != "metric"]
        fields = list(entry[variants[0]][metric])
        width = 0.8 / len(variants)
        for i, variant in enumerate(variants):
            auc = ", ".join(f"{a:.2f}" for a in entry[variant]["field_classifier_auc"].values())
            ax.bar(np.arange(len(fields)) + i * width, [entry[variant][metric][f] for f in fields], width,
                   label=f"{variant} (field AUC {auc})")
        ax.set_xticks(np.arange(len(fields)) + 0.4 - width / 2, fields)
        ax.set_ylim(0, 1.35 * max(entry[v][metric][f] for v in variants for f in fields))   # room for the legend
        ax.set(ylabel=f"{metric} on the test split", title=f"{target}: trained on the reference field, "
               "adversarially adapted, or on both", xlabel="field")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
