"""Domain-shift detection with Evidently: a reference sample against a current one.

Three kinds of evidence, each where both samples have it:
- photometry, per column (magnitudes, colours, magnitude errors): Evidently's column drift tests,
  and the share of drifted columns against `drift_share`;
- image embeddings: one of Evidently's embedding drift methods (a classifier's ROC AUC, or MMD),
  called directly (Evidently's embeddings report also computes a t-SNE map, which is slow: that is
  added to the HTML only when asked);
- the model's predictions: the same column tests on each target's prediction.
Drift is `detected` when any of them is. Labels, where both samples have them, give the metrics of
the predictions on each side (a report, not a verdict).
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from galaxyprop.errors import GalaxypropError

PREDICTION_PREFIX = "pred_"
EMBEDDINGS = "image_embeddings"


#: Evidently's per-column tests whose score is a p-value (drift below the threshold); the others are distances.
P_VALUE_TESTS = {"ks", "t_test", "anderson", "cramer_von_mises", "mannw", "es", "epps_singleton", "empirical_mmd",
                 "chisquare", "z", "fisher_exact", "g_test"}


@dataclass(frozen=True)
class DriftSettings:
    """Every knob of the detector (params.yaml `drift.tests`)."""

    column_method: str = "ks"               # Evidently stat test per column (photometry and predictions)
    alarm_rate: float = 0.05                # chance that a batch drawn like the reference is flagged at all
    column_threshold: float | None = None   # None: the columns' share of alarm_rate / columns (Bonferroni)
    drift_share: float | None = None        # photometry drifts when this share of its columns does; None: any one
    embedding_method: str = "model"         # model (classifier ROC AUC) | mmd
    embedding_threshold: float | None = None    # None: Evidently's default (model 0.55, mmd 0.015)
    embedding_bootstrap: bool | None = None     # None: a bootstrap test when either side has < 1000 rows

    @classmethod
    def from_params(cls, tests: Mapping) -> DriftSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(tests) - known)
        if unknown:
            raise GalaxypropError(f"params drift.tests: unknown keys {unknown}; known: {sorted(known)}")
        settings = cls(**tests)
        if settings.embedding_method not in ("model", "mmd"):
            raise GalaxypropError(f"params drift.tests.embedding_method: '{settings.embedding_method}' is not "
                                  "one of model, mmd")
        if settings.drift_share is not None and not 0 < settings.drift_share <= 1:
            raise GalaxypropError(f"params drift.tests.drift_share must be in (0, 1] or null, got "
                                  f"{settings.drift_share}")
        if settings.column_threshold is None and settings.column_method not in P_VALUE_TESTS:
            raise GalaxypropError(f"params drift.tests.column_threshold must be set for the distance test "
                                  f"'{settings.column_method}' (alarm_rate applies to p-value tests: "
                                  f"{sorted(P_VALUE_TESTS)})")
        if not 0 < settings.alarm_rate < 1:
            raise GalaxypropError(f"params drift.tests.alarm_rate must be in (0, 1), got {settings.alarm_rate}")
        return settings

    def threshold_for(self, n_columns: int, shared: bool = False) -> float:
        """The per-column threshold when `n_columns` columns are tested together; `shared`: half the
        alarm rate goes to a significance test on the embeddings."""
        if self.column_threshold is not None:
            return float(self.column_threshold)
        return self.alarm_rate * (0.5 if shared else 1.0) / max(n_columns, 1)

    def bootstraps(self, n_reference: int, n_current: int) -> bool:
        """Whether the embedding test is a significance test. Evidently's rule (below 1000 reference
        rows) applied to the smaller side: the AUC's noise is set by it, and a fixed threshold of 0.55
        false-alarms on small batches (30 % at 50 galaxies)."""
        return min(n_reference, n_current) < 1000 if self.embedding_bootstrap is None else self.embedding_bootstrap

    def photometry_drifts(self, n_drifted: int, n_columns: int) -> bool:
        if self.drift_share is None:
            return n_drifted > 0
        return n_drifted / n_columns >= self.drift_share

    def embedding_drift_method(self, n_reference: int, n_current: int):
        """Evidently's method; as a significance test it gets half the alarm rate (the columns the rest)."""
        from evidently.metrics.embeddings import MMDDriftMethod, ModelDriftMethod

        options = {"bootstrap": self.bootstraps(n_reference, n_current),
                   "quantile_probability": 1 - self.alarm_rate / 2}
        if self.embedding_threshold is not None:
            options["threshold"] = self.embedding_threshold
        # (Evidently's MMD default quantile_probability, 0.05, would flag drift whenever MMD beats the 5th
        # percentile of its null: a 95 % false-alarm rate.)
        method = MMDDriftMethod if self.embedding_method == "mmd" else ModelDriftMethod
        return method(**options)


@dataclass
class Sample:
    """One side of a comparison. Every part is optional; rows line up across the parts."""

    name: str
    photometry: pd.DataFrame | None = None    # magnitudes, colours, magnitude errors
    embeddings: np.ndarray | None = None      # (n, d) image embeddings
    predictions: pd.DataFrame | None = None   # one column per target: the model's point estimate
    labels: pd.DataFrame | None = None        # one column per target: the true value

    def __len__(self) -> int:
        for part in (self.photometry, self.embeddings, self.predictions, self.labels):
            if part is not None:
                return len(part)
        return 0

    def take(self, rows: np.ndarray, name: str | None = None) -> Sample:
        def pick(part):
            if part is None:
                return None
            return part[rows] if isinstance(part, np.ndarray) else part.iloc[rows].reset_index(drop=True)
        return Sample(name or self.name, pick(self.photometry), pick(self.embeddings), pick(self.predictions),
                      pick(self.labels))


@dataclass
class Comparison:
    """The verdict (what `summary.json` holds for one comparison) and the Evidently snapshot."""

    name: str
    verdict: dict
    snapshot: object = field(repr=False, default=None)

    def save_html(self, path: str | Path) -> None:
        """Evidently's HTML report, byte-stable: the same comparison gives the same file."""
        from galaxyprop.data.io import atomic_path

        with atomic_path(path) as tmp:
            self.snapshot.save_html(str(tmp))
            tmp.write_bytes(stable_ids(tmp.read_bytes()))


#: The ids Evidently gives each widget and metric: time-based UUIDs (`01a2347c-f533-7bb3-...`) and
#: their 32-digit hex form (`metric_947c1e54...`), new on every run although nothing else differs.
_WIDGET_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                        rb"|(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def stable_ids(html: bytes) -> bytes:
    """`html` with every widget id renumbered in order of first appearance (0, 1, ...), in the same
    format: links between widgets are kept, and two runs of one comparison write equal files."""
    numbers: dict[bytes, int] = {}

    def renumber(match: re.Match) -> bytes:
        n = numbers.setdefault(match.group(0), len(numbers))
        return b"%08x-0000-7000-8000-%012x" % (n, n) if b"-" in match.group(0) else b"%032x" % n

    return _WIDGET_ID.sub(renumber, html)


def comparison_name(reference: Sample, current: Sample) -> str:
    return f"{reference.name}_vs_{current.name}"


def _check_pair(reference: Sample, current: Sample) -> None:
    for sample in (reference, current):
        if len(sample) < 2:
            raise GalaxypropError(f"drift: sample '{sample.name}' has {len(sample)} rows; a comparison needs at "
                                  "least 2 on each side")
    if reference.photometry is not None and current.photometry is not None:
        ref_cols, cur_cols = list(reference.photometry.columns), list(current.photometry.columns)
        if ref_cols != cur_cols:
            missing = [c for c in ref_cols if c not in cur_cols]
            extra = [c for c in cur_cols if c not in ref_cols]
            raise GalaxypropError(f"drift: photometry columns differ: '{current.name}' lacks {missing} and has "
                                  f"{extra} that '{reference.name}' does not")
    if (reference.embeddings is not None and current.embeddings is not None
            and reference.embeddings.shape[1] != current.embeddings.shape[1]):
        raise GalaxypropError(f"drift: embeddings of '{reference.name}' have {reference.embeddings.shape[1]} "
                              f"dimensions, those of '{current.name}' {current.embeddings.shape[1]}")
    for sample in (reference, current):
        for name, part in (("photometry", sample.photometry), ("embeddings", sample.embeddings)):
            if part is None:
                continue
            values = np.asarray(part, float)
            bad = np.isinf(values).any(axis=0) | np.isnan(values).all(axis=0)
            if bad.any():
                at = int(np.argmax(bad))
                column = part.columns[at] if isinstance(part, pd.DataFrame) else f"dimension {at}"
                raise GalaxypropError(f"drift: {name} of '{sample.name}': column '{column}' has infinite values or "
                                      "no measured value (e.g. a band with every inverse variance 0)")


def _shared(reference, current) -> bool:
    return reference is not None and current is not None


def _embedding_columns(dim: int) -> list[str]:
    return [f"emb{i:03d}" for i in range(dim)]


def _frame(sample: Sample, columns: list[str], predictions: list[str], with_embeddings: bool) -> pd.DataFrame:
    parts = [pd.DataFrame(index=pd.RangeIndex(len(sample)))]
    if columns:
        parts.append(sample.photometry[columns].reset_index(drop=True).astype(float))
    if predictions:
        parts.append(sample.predictions[predictions].add_prefix(PREDICTION_PREFIX).reset_index(drop=True))
    if with_embeddings:
        parts.append(pd.DataFrame(sample.embeddings, columns=_embedding_columns(sample.embeddings.shape[1])))
    return pd.concat(parts, axis=1)


def embedding_drift(reference: np.ndarray, current: np.ndarray, settings: DriftSettings) -> dict:
    """Score and verdict of Evidently's embedding drift method (no t-SNE)."""
    method = settings.embedding_drift_method(len(reference), len(current))
    names = _embedding_columns(reference.shape[1])
    score, detected, method_name = method(pd.DataFrame(current, columns=names),
                                          pd.DataFrame(reference, columns=names))
    return {"score": float(score), "detected": bool(detected), "method": method_name,
            "threshold": float(method.threshold), "bootstrap": bool(method.bootstrap),
            "quantile": float(method.quantile_probability)}


@functools.cache
def _verdict_metric_type():
    """An Evidently metric that shows the embedding verdict computed above in the HTML report
    (defined on first use, so that importing this module does not import Evidently)."""
    from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
    from evidently.legacy.renderers.html_widgets import CounterData, counter

    class EmbeddingDriftVerdict(SingleValueMetric):
        class Config:
            type_alias = "galaxyprop:metric:EmbeddingDriftVerdict"

        embeddings_name: str
        score: float
        detected: bool
        method_name: str
        threshold: float
        bootstrap: bool
        quantile: float

    class EmbeddingDriftVerdictCalculation(SingleValueCalculation[EmbeddingDriftVerdict]):
        def calculate(self, context, current_data, reference_data):
            m = self.metric
            rule = (f"beyond the {100 * m.quantile:g}th percentile of its bootstrap null" if m.bootstrap
                    else f"threshold {m.threshold:g}")
            result = self.result(m.score)
            result.widget = [counter(counters=[CounterData(
                f"Drift {'detected' if m.detected else 'not detected'}. Method: {m.method_name} ({rule}). "
                f"Score: {m.score:.4f}", f"Drift in embeddings '{m.embeddings_name}'")], title="")]
            return result

        def display_name(self) -> str:
            return f"Embedding drift score: {self.metric.embeddings_name}"

    return EmbeddingDriftVerdict


def _column_flags(snapshot, columns: list[str]) -> tuple[dict[str, float], dict[str, bool]]:
    """Per-column drift score and verdict from the snapshot's ValueDrift metrics and tests."""
    result = snapshot.dict()
    scores, flags = {}, {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith(":ValueDrift") and config["column"] in columns:
            scores[config["column"]] = float(metric["value"])
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type", "").endswith(":ValueDrift") and params["column"] in columns:
            flags[params["column"]] = test["status"] == "FAIL"
    return scores, flags


def _label_metrics(reference: Sample, current: Sample, metrics_of: Callable | None) -> dict:
    if metrics_of is None or not (_shared(reference.labels, current.labels)
                                  and _shared(reference.predictions, current.predictions)):
        return {}
    out = {}
    for target in [t for t in current.predictions.columns if t in current.labels and t in reference.labels]:
        sides = {side: metrics_of(target, s.labels[target].to_numpy(float), s.predictions[target].to_numpy(float))
                 for side, s in (("reference", reference), ("current", current))}
        out[target] = {m: {side: float(v[m]) for side, v in sides.items()} for m in sides["current"]}
    return out


def compare(reference: Sample, current: Sample, settings: DriftSettings, *, embedding_map: bool = False,
            metrics_of: Callable[[str, np.ndarray, np.ndarray], Mapping[str, float]] | None = None) -> Comparison:
    """Compare `current` with `reference` on every part both have.

    `metrics_of(target, truth, prediction)` gives the metrics of a target where both have labels.
    `embedding_map` adds Evidently's embeddings report (with its slow t-SNE map) to the HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, EmbeddingsDrift, ValueDrift

    _check_pair(reference, current)
    name = comparison_name(reference, current)
    columns = list(reference.photometry.columns) if _shared(reference.photometry, current.photometry) else []
    targets = ([t for t in reference.predictions.columns if t in current.predictions.columns]
               if _shared(reference.predictions, current.predictions) else [])
    predicted = [PREDICTION_PREFIX + t for t in targets]
    has_embeddings = _shared(reference.embeddings, current.embeddings)
    if not (columns or targets or has_embeddings):
        raise GalaxypropError(f"drift: '{reference.name}' and '{current.name}' share nothing to compare "
                              "(photometry, embeddings or predictions)")

    threshold = settings.threshold_for(len(columns) + len(predicted),
                                       shared=has_embeddings and settings.bootstraps(len(reference), len(current)))
    test = dict(method=settings.column_method, threshold=threshold)
    metrics: list = []
    if columns:
        metrics.append(DriftedColumnsCount(columns=columns, num_method=settings.column_method, num_threshold=threshold,
                                           drift_share=settings.drift_share or 0.5 / len(columns)))
    metrics += [ValueDrift(column=c, **test) for c in columns + predicted]
    verdict: dict = {"n_reference": len(reference), "n_current": len(current)}
    embedding = None
    if has_embeddings:
        embedding = embedding_drift(reference.embeddings, current.embeddings, settings)
        shown = {k: embedding[k] for k in ("score", "detected", "threshold", "bootstrap", "quantile")}
        metrics.append(_verdict_metric_type()(embeddings_name=EMBEDDINGS, method_name=embedding["method"], **shown))
        if embedding_map:
            metrics.append(EmbeddingsDrift(embeddings_name=EMBEDDINGS,
                                           drift_method=settings.embedding_drift_method(len(reference), len(current))))
    definition = DataDefinition(numerical_columns=columns + predicted,
                                embeddings={EMBEDDINGS: _embedding_columns(reference.embeddings.shape[1])}
                                if embedding_map else None)
    with_embeddings = has_embeddings and embedding_map
    report = Report(metrics, include_tests=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # scipy/pandas chatter from inside Evidently's stat tests
        snapshot = report.run(
            Dataset.from_pandas(_frame(current, columns, targets, with_embeddings), data_definition=definition),
            Dataset.from_pandas(_frame(reference, columns, targets, with_embeddings), data_definition=definition))
    scores, flags = _column_flags(snapshot, columns + predicted)

    parts = []
    if columns:
        drifted = [c for c in columns if flags[c]]
        verdict.update(share_drifted=len(drifted) / len(columns), drifted_columns=drifted,
                       column_scores={c: scores[c] for c in columns},
                       photometry_detected=settings.photometry_drifts(len(drifted), len(columns)))
        parts.append(verdict["photometry_detected"])
    if embedding is not None:
        verdict.update(embedding_drift_score=embedding["score"], embedding_detected=embedding["detected"],
                       embedding_method=embedding["method"],
                       embedding_test=(f"bootstrap, {embedding['quantile']:g} quantile of the null"
                                       if embedding["bootstrap"] else f"threshold {embedding['threshold']:g}"),
                       embedding_threshold=None if embedding["bootstrap"] else embedding["threshold"])
        parts.append(embedding["detected"])
    if targets:
        verdict["prediction_drift"] = {t: {"score": scores[PREDICTION_PREFIX + t],
                                           "detected": flags[PREDICTION_PREFIX + t]} for t in targets}
        parts += [v["detected"] for v in verdict["prediction_drift"].values()]
    quality = _label_metrics(reference, current, metrics_of)
    if quality:
        verdict["metrics"] = quality
    verdict["detected"] = any(parts)
    verdict["settings"] = {"column_method": settings.column_method, "column_threshold": threshold,
                           "drift_share": settings.drift_share}
    return Comparison(name, _finite(verdict), snapshot)


def _finite(value):
    """JSON-safe: NaN/inf become None, numpy scalars plain Python."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def false_alarm_rate(pool: Sample, n_reference: int, n_current: int, n_splits: int, settings: DriftSettings,
                     seed: int = 0, progress: bool = False) -> dict:
    """Detector's false alarms: draw disjoint reference/current samples of the given sizes from one
    population `pool` `n_splits` times and count how often drift is `detected` (and by which part)."""
    from tqdm.auto import tqdm

    if n_reference + n_current > len(pool):
        raise GalaxypropError(f"drift: the control pool has {len(pool)} rows, fewer than {n_reference} + "
                              f"{n_current}")
    rng = np.random.default_rng(seed)
    counts = {"detected": 0, "photometry": 0, "embeddings": 0, "predictions": 0}
    share, auc = [], []
    for _ in tqdm(range(n_splits), desc="drift control splits", disable=not progress):
        rows = rng.permutation(len(pool))
        verdict = compare(pool.take(rows[:n_reference], "reference"), pool.take(rows[n_reference:][:n_current],
                          "current"), settings).verdict
        counts["detected"] += verdict["detected"]
        counts["photometry"] += verdict.get("photometry_detected", False)
        counts["embeddings"] += verdict.get("embedding_detected", False)
        counts["predictions"] += any(v["detected"] for v in verdict.get("prediction_drift", {}).values())
        share.append(verdict.get("share_drifted", float("nan")))
        auc.append(verdict.get("embedding_drift_score", float("nan")))
    return _finite({"n_splits": n_splits, "n_reference": n_reference, "n_current": n_current,
                    "false_alarm_rate": counts["detected"] / n_splits,
                    "by_part": {k: v / n_splits for k, v in counts.items() if k != "detected"},
                    "share_drifted_max": float(np.nanmax(share)) if np.isfinite(share).any() else None,
                    "embedding_drift_score_max": float(np.nanmax(auc)) if np.isfinite(auc).any() else None})

