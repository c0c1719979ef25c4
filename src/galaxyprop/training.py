"""One result of a train stage (a head on one feature source for one target): tune the head with Optuna on
the validation split (one MLflow run per trial, under the stage's run), keep the best model and complete
it, calibrate its densities on the validation split, and predict the splits.

Given what it works on (the splits' inputs, the params sections as a `TrainingSpec`, the stores), it
reads and writes no file of the workspace (tuning workers hand their best model over in a temporary
folder): the train stage reads the prepared data and writes what `train` returns.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np

from galaxyprop.calibration import CalibrationSettings
from galaxyprop.config import Stores, params_hash, section
from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid, quantiles, resample
from galaxyprop.evaluation.metrics import density_metrics, objective_value, target_metrics
from galaxyprop.features.multimodal import ImagesAndFeatures
from galaxyprop.heads import head_class, head_module, make_head
from galaxyprop.heads.base import Head
from galaxyprop.provenance import code_digest
from galaxyprop.registry.predictor import QUANTILES, Predictor
from galaxyprop.resources import thread_plan
from galaxyprop.tracking import runs as tracking
from galaxyprop.tracking.tuning import FINISHED, hyperparameters, make_pruner, pruning_callback, tune

#: One split's (inputs, truths, catalogue rows, survey field per row or None).
Split = tuple


@dataclass(frozen=True)
class TrainingSpec:
    """What one result's training reads of params: the head's and the target's sections, and the shared
    settings (`from_params` takes them from a params dict)."""

    head: str
    target: str
    name: str                       # the result's name: <head>@<features>, or the head on image inputs
    head_params: Mapping            # heads.<head>
    target_params: Mapping          # targets.<target>
    eta: float                      # evaluation.eta_threshold
    seed: int
    tuning: Mapping                 # tuning: workers, pruner, seed
    threads: object                 # resources.threads
    source: str                     # data.source (studies are named by it)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)

    @classmethod
    def from_params(cls, head: str, target: str, name: str, params: Mapping) -> TrainingSpec:
        return cls(head, target, name, section(params, f"heads.{head}"), section(params, f"targets.{target}"),
                   section(params, "evaluation.eta_threshold"), section(params, "seed"), section(params, "tuning"),
                   (params.get("resources") or {}).get("threads", "auto"), section(params, "data.source"),
                   CalibrationSettings.from_params(section(params, "calibration")))

    @property
    def n_trials(self) -> int:
        """A target may tune its heads with fewer (or more) trials than the heads' own n_trials."""
        return (self.target_params.get("n_trials") or {}).get(self.head, self.head_params["n_trials"])

    @property
    def objective_metric(self) -> str:
        """Heads with densities may tune on a density metric of the validation split (e.g. clap on crps)."""
        return self.head_params.get("objective", self.target_params["metric"])

    @property
    def grid(self) -> Grid:
        return Grid.from_params(self.target_params["grid"])

    @property
    def settings(self) -> dict:
        """The head's fixed settings (heads.<head>.fixed), with the global seed unless the head sets one."""
        settings = dict(self.head_params.get("fixed") or {})
        if "seed" in inspect.signature(head_class(self.head)).parameters:
            settings.setdefault("seed", self.seed)
        return settings

    @property
    def fixed(self) -> dict:
        """What every trial shares: the settings and, for heads that learn densities on it, the target's grid
        (the trials draw the rest from heads.<head>.search)."""
        return {**self.settings, **({"grid": self.target_params["grid"]} if head_class(self.head).needs_grid else {})}


@dataclass
class TrainedResult:
    """The kept, calibrated model and how it was found."""

    predictor: Predictor
    hyper: dict                     # the best trial's hyperparameters with the fixed settings
    study_name: str
    best_trial: object              # optuna.trial.FrozenTrial
    calibration: object             # calibration.CalibrationResult: its report and the out-of-fold val densities
    n_complete: int
    n_pruned: int
    seconds: dict[str, float]       # tune, finalise, calibrate


@dataclass
class SplitPrediction:
    """A split's served answers: the point estimate, the half-width of the calibrated 68 % interval, the
    head's own spread, and the raw and calibrated densities on the target's grid."""

    value: np.ndarray
    half_width: np.ndarray
    spread_raw: np.ndarray
    raw: np.ndarray
    calibrated: np.ndarray


def digest(*arrays) -> str:
    """sha256 of the inputs' bytes (a multimodal head's cutouts and features each)."""
    sha = hashlib.sha256()
    for array in arrays:
        for part in (array.images, array.features) if isinstance(array, ImagesAndFeatures) else (array,):
            sha.update(np.ascontiguousarray(part).tobytes())
    return sha.hexdigest()


def epoch_callbacks(trial) -> list:
    """For heads trained by epochs: loss curves into the trial's MLflow run, and Optuna's pruning."""
    from galaxyprop.heads.neural import EpochReporter

    return [EpochReporter(lambda metrics, step: tracking.log_metrics(metrics, step=step)), pruning_callback(trial)]


def fit(head: Head, data: Mapping[str, Split], callbacks=()) -> Head:
    """A tuning trial's fit: on the training split, early-stopping on the validation split and reporting
    to `callbacks` (heads trained by epoch), with the head's `trial_options` (clap: one realisation)."""
    return head.fit(*data["train"][:2], validation=tuple(data["val"][:2]), callbacks=callbacks,
                    **head.trial_options)


def common_hyperparameters(head: str, hyper: Mapping) -> dict:
    """The kept model's hyperparameters under the names heads share (`Head.common_names`: knn's `k` and
    clap's `k_max` are both `neighbours`), so that runs of different heads compare on the same params."""
    names = head_class(head).common_names
    return {names.get(name, name): value for name, value in hyper.items()}


def study_name(spec: TrainingSpec, data: Mapping[str, Split]) -> str:
    """The study is keyed by the data it scores on (the inputs' bytes, so a retrained encoder starts a new
    study), the code that fits and scores (the head's own import closure and the metrics: an edited head does
    not inherit trials its old code ran, an edit elsewhere keeps every other head's study) and everything
    else that changes the objective (not n_trials: more trials extend a study)."""
    code = code_digest(head_module(spec.head), "galaxyprop.evaluation.metrics")
    scoring = {k: spec.target_params[k] for k in ("metric", "outlier_threshold", "grid")}
    lineage = params_hash(digest(*data["train"][:2], *data["val"][:2]), code, spec.head_params["search"],
                          spec.settings, scoring, spec.objective_metric)
    return f"{spec.source}-{spec.target}-{spec.name}-{lineage}"


def train(spec: TrainingSpec, data: Mapping[str, Split], stores: Stores, study: str, run_name: str,
          parent_run_id: str, encoder_of: Callable[[Head], object]) -> TrainedResult:
    """Tune in the Optuna study `study` (`study_name`; each trial an MLflow run under `parent_run_id`), keep
    the best trial's model, complete it, wrap it with its inputs' encoder (`encoder_of(head)`), record its
    training support and calibrate it on `val`."""
    grid, fixed = spec.grid, spec.fixed
    gives_density = head_class(spec.head).gives_density
    objective_metric = spec.objective_metric
    best: dict = {"value": np.inf, "head": None, "trial": None}
    workers = spec.tuning["workers"]
    # several tuning workers share the cores; one is this process, whose threads the stage already set
    tuning_threads = thread_plan(spec.threads, workers) if workers > 1 else None
    # Tuning workers other than this process (tuning.workers > 1) leave their best model here for it to keep.
    kept = tempfile.TemporaryDirectory(prefix="galaxyprop-trials-")
    stage_pid = os.getpid()

    def objective(hyper: dict, trial) -> tuple[float, dict]:
        head = make_head(spec.head, **{**hyper, **fixed})
        fit(head, data, epoch_callbacks(trial) if head.trains_by_epoch else [])
        X_val, y_val = data["val"][:2]
        metrics = target_metrics(spec.target, y_val, head.predict(X_val).value,
                                 spec.target_params["outlier_threshold"], spec.eta)
        # a trial may leave its densities to finalise (gbt's quantile models), unless it is scored on them
        if gives_density and not head.density_ready and objective_metric not in metrics:
            head.finalise(*data["train"][:2], validation=tuple(data["val"][:2]))
        if gives_density and head.density_ready:
            metrics.update(density_metrics(head.predict_pdf(X_val, grid), grid, y_val))
        if objective_metric not in metrics:
            raise GalaxypropError(f"heads.{spec.head}.objective: '{objective_metric}' is not a metric of this head; "
                                  f"choose from {sorted(metrics)}")
        value = objective_value(objective_metric, metrics[objective_metric])
        tracking.log_metrics({**metrics, "objective": value}, prefix="val_")
        if value < best["value"]:
            best.update(value=value, head=head, trial=trial.number)
            if os.getpid() != stage_pid:
                joblib.dump(head, Path(kept.name) / f"trial-{trial.number}.joblib")
        return value, metrics

    start = time.perf_counter()
    tuned = tune(objective, spec.head_params["search"], n_trials=spec.n_trials, study_name=study,
                 storage=stores.optuna_storage, seed=spec.tuning["seed"], pruner=make_pruner(spec.tuning["pruner"]),
                 trial_context=lambda trial, hyper: tracking.trial_run(trial, hyper, run_name, parent_run_id),
                 workers=workers, threads=tuning_threads)
    tune_seconds = time.perf_counter() - start
    trial = tuned.best_trial
    hyper = hyperparameters(spec.settings, trial)
    # The best trial's model (from this process or the tuning worker that ran it), or (when it ran before an
    # interruption) the same model refitted; then completed (e.g. clap's ensemble grows from the trial's one
    # realisation).
    start = time.perf_counter()
    from_worker = Path(kept.name) / f"trial-{trial.number}.joblib"
    head = (best["head"] if best["trial"] == trial.number else joblib.load(from_worker) if from_worker.exists()
            else fit(make_head(spec.head, **{**hyper, **fixed}), data))
    kept.cleanup()
    head.finalise(*data["train"][:2], validation=tuple(data["val"][:2]))
    finalise_seconds = time.perf_counter() - start

    predictor = Predictor(spec.target, encoder_of(head), head, grid)
    predictor.record_support(*data["train"][:2])       # where served answers stop extrapolating
    # Calibration on the validation split (out-of-fold for its own metrics), stored in the model.
    X_val, y_val, _, val_fields = data["val"]
    start = time.perf_counter()
    calibration = predictor.calibrate(X_val, y_val, val_fields, spec.calibration)
    calibrate_seconds = time.perf_counter() - start
    states = [t.state.name for t in tuned.trials if t.state in FINISHED]
    return TrainedResult(predictor, hyper, study, trial, calibration, states.count("COMPLETE"), states.count("PRUNED"),
                         {"tune": tune_seconds, "finalise": finalise_seconds, "calibrate": calibrate_seconds})


def predict_split(result: TrainedResult, split: str, X, fields) -> SplitPrediction:
    """The served answers on one split (the validation galaxies' calibrated densities are their own
    out-of-fold ones), the densities resampled onto the target's grid."""
    predictor = result.predictor
    prediction, raw, calibrated, fine = predictor.densities(X, fields)
    if split == "val":
        calibrated = result.calibration.validation_pdf
    low, high = quantiles(calibrated, fine, np.array([QUANTILES[1], QUANTILES[3]])).T
    return SplitPrediction(prediction.value, (high - low) / 2, prediction.spread,
                           resample(raw, fine, predictor.grid), resample(calibrated, fine, predictor.grid))
