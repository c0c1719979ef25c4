"""Stage embed: image and spectrum embeddings of every split with the trained encoder, keyed by id,
each folder with the feature encoder that made it; a PCA map of the image embeddings."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.astroclip import AstroclipFile
from galaxyprop.data.desi import IMAGE_ROW
from galaxyprop.data.io import save_object, write_parquet
from galaxyprop.encoder.contrastive import ContrastiveModel
from galaxyprop.encoder.params import ENCODER_SCHEMA
from galaxyprop.encoder.spectra import check_spectra
from galaxyprop.errors import exit_on_error
from galaxyprop.evaluation import data_plots
from galaxyprop.features.images import channels_first
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import (
    EMBEDDING_PLOTS,
    ENCODER,
    ENCODER_CHECKPOINT,
    FEATURE_ENCODER,
    FEATURES,
    RAW,
    SKIPPED,
    raw_images,
)

from common import prepared_split, save_figure, write_skipped
from stage import stage_params

log = logging.getLogger("embed")


def embed_split(file: AstroclipFile, rows: np.ndarray, embedders: dict, chunk: int, batch_size: int,
                split: str, device: str) -> dict[str, np.ndarray]:
    """Embeddings of `rows` for each modality, read `chunk` rows at a time (constant memory)."""
    out = {kind: np.empty((len(rows), e.dim), np.float32) for kind, e in embedders.items()}
    for start in tqdm(range(0, len(rows), chunk), desc=f"embed {split}", unit="chunk"):
        block = rows[start:start + chunk]
        inputs = {"image": file.images(block), "spectrum": file.spectra(block)[0]}
        inputs = {"image": channels_first(inputs["image"], what=f"{file.path}: images", row_ids=block),
                  "spectrum": check_spectra(inputs["spectrum"], f"{file.path}: spectra", block)}
        for kind, embedder in embedders.items():
            out[kind][start:start + len(block)] = embedder.transform(inputs[kind], batch_size, device=device)
    return out


@exit_on_error
def main() -> None:
    params = stage_params(ENCODER_SCHEMA)
    config = section(params, "encoder.embedding")
    if (ENCODER / SKIPPED).exists() or not ENCODER_CHECKPOINT.exists():
        for kind in ("image", "spectrum"):
            write_skipped(FEATURES / kind, f"no trained encoder for data source '{section(params, 'data.source')}'")
        EMBEDDING_PLOTS.mkdir(parents=True, exist_ok=True)
        return
    model = ContrastiveModel.load(ENCODER_CHECKPOINT)
    embedders = {"image": model.image_embedder(), "spectrum": model.spectrum_embedder()}
    test, device = {}, "cuda" if torch.cuda.is_available() else "cpu"
    with tracking.stage_run(Stores.from_params(params), "embed", params={"embedding": config},
                            tags={"features": "image"}), AstroclipFile(raw_images(RAW)) as file:
        for kind, embedder in embedders.items():
            (FEATURES / kind / SKIPPED).unlink(missing_ok=True)
            save_object(embedder, FEATURES / kind / FEATURE_ENCODER)
        for split in schema.SPLITS:
            frame = prepared_split(split)
            embeddings = embed_split(file, frame[IMAGE_ROW].to_numpy(), embedders, config["chunk_size"],
                                     config["batch_size"], split, device)
            for kind, matrix in embeddings.items():
                table = pd.DataFrame(matrix, columns=embedders[kind].names)
                table.insert(0, schema.ID, frame[schema.ID].to_numpy())
                write_parquet(table, FEATURES / kind / f"{split}.parquet")
            if split == "test":
                test = {"frame": frame, **embeddings}
        figure = data_plots.embedding_map(test["image"], test["frame"][schema.REDSHIFT].to_numpy(),
                                     test["frame"][schema.PHOTSYS].to_numpy(),
                                     "image embeddings of the test split (PCA)")
        save_figure(figure, EMBEDDING_PLOTS / "image_pca.png")
        tracking.log_artifacts([EMBEDDING_PLOTS], artifact_path="plots/embeddings")
        tracking.log_metrics({"embedding_dim": embedders["image"].dim,
                              **{f"n_{split}": len(prepared_split(split)) for split in schema.SPLITS}})


if __name__ == "__main__":
    main()
