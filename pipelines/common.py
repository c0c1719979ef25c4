"""What every stage script shares: reading prepared splits and features, model inputs, figures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError
from galaxyprop.results import MULTIMODAL_INPUTS
from galaxyprop.workspace import BANDS, FEATURES, RAW, SKIPPED, feature_path, prepared_path

import stage  # noqa: F401  (the stages' logging)


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically and free it."""
    import matplotlib.pyplot as plt

    from galaxyprop.data.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def prepared_split(split: str) -> pd.DataFrame:
    path = prepared_path(split)
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run the prepare stage (dvc repro prepare)")
    return pd.read_parquet(path)


def prepared_bands() -> dict:
    """The source's bands as the prepare stage recorded them: `bands`, `responses`, `label_band`."""
    path = BANDS
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run the prepare stage (dvc repro prepare)")
    return json.loads(path.read_text())


def feature_split(source: str, split: str) -> pd.DataFrame:
    """The feature matrix of one source and split, keyed by id."""
    skipped = FEATURES / source / SKIPPED
    if skipped.exists():
        raise GalaxypropError(f"feature source '{source}' was not built: {json.loads(skipped.read_text())['reason']}")
    path = feature_path(source, split)
    if not path.exists():
        raise GalaxypropError(f"{path} not found: run the stage that makes '{source}' features (dvc repro)")
    return pd.read_parquet(path)

def registered_kind(inputs: str) -> str | None:
    """The kind of input (multimodal, images, catalogue) a model learned from `inputs` (as `inputs_of`
    names them) takes; None for the baselines and for models on embeddings or spectra made elsewhere,
    which no registered model takes."""
    from galaxyprop.features.combined import source_input_kind
    from galaxyprop.features.multimodal import REGISTERED_KINDS

    if inputs == MULTIMODAL_INPUTS:
        return "multimodal"
    if inputs == "cutouts":
        return "images"
    return REGISTERED_KINDS.get(source_input_kind(inputs) or "")


def write_skipped(folder: Path, reason: str) -> None:
    """Record why a stage made no outputs for this source (e.g. a catalogue without images)."""
    import shutil

    from galaxyprop.data.io import write_json

    shutil.rmtree(folder, ignore_errors=True)
    write_json({"reason": reason}, folder / SKIPPED)
    logging.getLogger("pipeline").warning("%s: %s", folder, reason)


def prediction_frame(frame: pd.DataFrame, split: str, target: str, value, spread) -> pd.DataFrame:
    """The predictions layout every head writes: id, split, redshift, truth, prediction, spread."""
    return pd.DataFrame({schema.ID: frame[schema.ID].to_numpy(), schema.SPLIT: split,
                         schema.REDSHIFT: frame[schema.REDSHIFT].to_numpy(),
                         "true": frame[target].to_numpy(), "prediction": value, "spread": spread})


def split_fields(frame: pd.DataFrame):
    """The survey field (PHOTSYS) of each row, or None for a source without fields."""
    return frame[schema.PHOTSYS].to_numpy() if schema.PHOTSYS in frame.columns else None


def split_inputs(head: str, features: str, split: str, target: str) -> tuple:
    """Inputs, target and catalogue rows of one split: the feature matrix of the galaxies that have
    these features, (image heads) every galaxy's cutouts, or (multimodal heads) every galaxy's
    cutouts with its catalogue photometry features."""
    import numpy as np

    from galaxyprop.features.multimodal import ImagesAndFeatures
    from galaxyprop.heads import IMAGE_HEADS, MULTIMODAL_HEADS

    frame = prepared_split(split)
    if head in IMAGE_HEADS:
        return model_inputs("images", frame, features), frame[target].to_numpy(float), frame
    if head in MULTIMODAL_HEADS:
        photometry = feature_split("photometry", split).set_index(schema.ID).loc[frame[schema.ID]]
        inputs = ImagesAndFeatures(model_inputs("images", frame, features), photometry.to_numpy(np.float32))
        return inputs, frame[target].to_numpy(float), frame
    table = feature_split(features, split)
    frame = frame[frame[schema.ID].isin(table[schema.ID])].reset_index(drop=True)
    matrix = table.set_index(schema.ID).loc[frame[schema.ID]].to_numpy(np.float32)
    return matrix, frame[target].to_numpy(float), frame


def model_inputs(input_kind: str, frame: pd.DataFrame, features: str):
    """What a model taking `input_kind` is given for the catalogue rows `frame`: the rows themselves,
    their g,r,z cutouts (N, 3, H, W) or spectra from the source's image file, their embeddings, or
    (multimodal) the cutouts and the rows together."""
    import numpy as np

    from galaxyprop.data.astroclip import AstroclipFile
    from galaxyprop.data.desi import IMAGE_ROW
    from galaxyprop.features.multimodal import Multimodal
    from galaxyprop.workspace import raw_images

    if input_kind == "catalog":
        return frame
    if input_kind == "multimodal":
        return Multimodal(model_inputs("images", frame, features), frame.reset_index(drop=True))
    if input_kind == "embeddings":
        table = feature_split(features, "test").set_index(schema.ID)
        return table.loc[frame[schema.ID]].to_numpy(np.float32)
    with AstroclipFile(raw_images(RAW)) as file:
        rows = frame[IMAGE_ROW].to_numpy()
        if input_kind == "images":
            return file.cutouts(rows)
        return file.spectra(rows)[0].astype(np.float32)
