"""The workspace's file layout: where every stage, command and test finds data, models and reports.

Paths are relative to the project root (the folder holding `dvc.yaml`), and `dvc.yaml` declares
the same paths as stage outputs; nothing else in the package spells them out.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
RAW = DATA / "raw"
#: what import_data writes in RAW: the AstroCLIP image/spectrum file (or folder of Parquet shards) and the catalogue
IMAGES_FILE, IMAGES_DIR, FASTSPEC_FILE = "astroclip.h5", "astroclip", "fastspec.fits"
PREPARED = DATA / "prepared"
BANDS = PREPARED / "bands.json"          # the source's bands, responses and label band
FEATURES = DATA / "features"
IMAGE_FEATURES = FEATURES / "image"
PREDICTIONS = DATA / "predictions"
DENSITIES = DATA / "densities"          # each model's val and test densities, raw and calibrated
MODELS = Path("models")
ENCODER = MODELS / "encoder"
ENCODER_CHECKPOINT = ENCODER / "encoder.pt"
SPECTRUM_MODELS = MODELS / "spectrum"            # the spectral latent and every spectrum head's predictor
SPECTRUM_SELECTED = SPECTRUM_MODELS / "selected.json"   # which one galaxyprop-spectrum serves
REPORTS = Path("reports")
PARAMS_CHECK = REPORTS / "params_check.json"
PREPARE_SUMMARY = REPORTS / "prepare.json"
ENCODER_SUMMARY = REPORTS / "encoder.json"
METRICS = REPORTS / "metrics.json"
VAL_METRICS = REPORTS / "val_metrics.json"
BREAKDOWN = REPORTS / "metrics_breakdown.json"
COMPARISON = REPORTS / "comparison.md"
REGISTERED = REPORTS / "registered.json"
REGISTERED_SPECTRUM = REPORTS / "registered_spectrum.json"
HEADLINE = REPORTS / "headline.json"      # the DVC metrics: each registered model's selection and gate figures
SPECTRA_REPORT = REPORTS / "spectra.json"
DRIFT = REPORTS / "drift"
DRIFT_SUMMARY = DRIFT / "summary.json"
DRIFT_BATCHES = DRIFT / "batches"
ADAPTATION = DRIFT / "adaptation.json"
TIMINGS = REPORTS / "timings"           # wall times and memory of the last run of each stage: not outputs, not in git
CURVES = REPORTS / "curves"             # the data behind the plots, as CSV for `dvc plots diff`
# one folder per kind of curve, so that `dvc plots` titles each kind's axes (dvc.yaml: x_label, y_label)
REDSHIFT_CURVES = CURVES / "metric_vs_redshift"   # <target>_<metric>.csv
PIT_CURVES = CURVES / "pit"                       # <target>.csv
COVERAGE_CURVES = CURVES / "coverage"             # <target>.csv
ENCODER_CURVES = CURVES / "encoder"
PLOTS = REPORTS / "plots"
EVALUATION_PLOTS = PLOTS / "evaluation"
DATA_PLOTS = PLOTS / "data"
ENCODER_PLOTS = PLOTS / "encoder"
EMBEDDING_PLOTS = PLOTS / "embeddings"
COMPARISON_PLOTS = PLOTS / "comparison"
DRIFT_PLOTS = PLOTS / "drift"
ADAPTATION_PLOTS = PLOTS / "adaptation"
SPECTRA_PLOTS = PLOTS / "spectra"
FEATURE_ENCODER = "encoder.joblib"   # in each feature source's folder: what turns inputs into its features
SKIPPED = "skipped.json"             # written instead of outputs when the source cannot feed a stage


def prepared_path(split: str) -> Path:
    return PREPARED / f"{split}.parquet"


TEST_SPLIT = prepared_path("test")


def feature_path(source: str, split: str) -> Path:
    """One feature source's matrix for one split: `data/features/image/train.parquet`."""
    return FEATURES / source / f"{split}.parquet"


def _result_folder(root: Path, target: str, name: str) -> Path:
    """A result on a feature source (`gbt@measured`) lives in its head's folder, the one train stage
    (head x target) that writes every source's result of that head: `models/z/gbt/gbt@measured`."""
    from galaxyprop.results import ResultName

    result = ResultName.parse(name)
    return root / target / result.head if result.features else root / target


def head_folders(target: str, head: str) -> tuple[Path, Path, Path]:
    """The model, predictions and densities folders of one train stage (head x target) of a feature head."""
    return MODELS / target / head, PREDICTIONS / target / head, DENSITIES / target / head


def model_dir(target: str, name: str) -> Path:
    return _result_folder(MODELS, target, name) / name


def predictions_path(target: str, name: str) -> Path:
    return _result_folder(PREDICTIONS, target, name) / f"{name}.parquet"


def densities_path(target: str, name: str) -> Path:
    return _result_folder(DENSITIES, target, name) / f"{name}.h5"


def result_files(root: Path, target: str, suffix: str) -> list[Path]:
    """Every result file of `target` under `root` (PREDICTIONS, DENSITIES), by name."""
    return sorted((root / target).rglob(f"*{suffix}"), key=lambda p: p.name)


def baseline_summary(head: str) -> Path:
    """The kcorrect baselines' summaries: `reports/kcorrect_specz.json`, `reports/kcorrect_photoz@image.json`."""
    return REPORTS / f"{head}.json"


def timings_path(stage: str) -> Path:
    """Where a stage leaves its wall times and peak memory (`reports/timings/train:z:knn@image.json`):
    they differ from run to run, so they live beside the outputs, never in one."""
    return TIMINGS / f"{stage.replace('/', '_')}.json"


def raw_images(raw: Path) -> Path | None:
    """The imported image/spectrum data in `raw`: the HDF5 file or the folder of Parquet shards."""
    for path in (raw / IMAGES_FILE, raw / IMAGES_DIR):
        if path.exists():
            return path
    return None
