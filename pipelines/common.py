"""What every stage script shares: the workspace layout (mirrored in dvc.yaml) and split loading."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError

RAW = Path("data/raw")
PREPARED = Path("data/prepared")
FEATURES = Path("data/features")
PREDICTIONS = Path("data/predictions")
MODELS = Path("models")
REPORTS = Path("reports")
PLOTS = REPORTS / "plots" / "evaluation"
DATA_PLOTS = REPORTS / "plots" / "data"

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
logging.getLogger("faiss").setLevel(logging.WARNING)


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically and free it."""
    import matplotlib.pyplot as plt

    from galaxyprop.data.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def prepared_split(split: str) -> pd.DataFrame:
    path = PREPARED / f"{split}.parquet"
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run the prepare stage (dvc repro prepare)")
    return pd.read_parquet(path)


def prepared_bands() -> dict:
    """The source's bands as the prepare stage recorded them: `bands`, `responses`, `label_band`."""
    path = PREPARED / "bands.json"
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run the prepare stage (dvc repro prepare)")
    return json.loads(path.read_text())


def feature_split(source: str, split: str) -> pd.DataFrame:
    path = FEATURES / source / f"{split}.parquet"
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run the features stage (dvc repro features)")
    return pd.read_parquet(path)


def predictions_path(target: str, head: str) -> Path:
    return PREDICTIONS / target / f"{head}.parquet"


def model_dir(target: str, head: str) -> Path:
    return MODELS / target / head


def prediction_frame(frame: pd.DataFrame, split: str, target: str, value, spread) -> pd.DataFrame:
    """The predictions layout every head writes: id, split, redshift, truth, prediction, spread."""
    return pd.DataFrame({schema.ID: frame[schema.ID].to_numpy(), schema.SPLIT: split,
                         schema.REDSHIFT: frame[schema.REDSHIFT].to_numpy(),
                         "true": frame[target].to_numpy(), "prediction": value, "spread": spread})
