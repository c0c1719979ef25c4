"""Stage train_encoder: the image-spectrum contrastive model on the train split, early-stopped on
the validation loss; test loss and cross-modal retrieval on the test split."""

from __future__ import annotations

import logging
import resource
import tempfile
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import MLFlowLogger

from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.astroclip import AstroclipFile
from galaxyprop.data.desi import IMAGE_ROW
from galaxyprop.data.io import write_json
from galaxyprop.encoder.contrastive import ContrastiveModel
from galaxyprop.encoder.distributed import EpochHistory, encoder_trainer
from galaxyprop.encoder.pairs import PairDataModule
from galaxyprop.encoder.params import ENCODER_SCHEMA
from galaxyprop.encoder.retrieval import retrieval_metrics
from galaxyprop.errors import exit_on_error
from galaxyprop.evaluation import data_plots
from galaxyprop.evaluation.curves import loss_curve, write_curve
from galaxyprop.features.images import background_noise
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import (
    ENCODER,
    ENCODER_CHECKPOINT,
    ENCODER_CURVES,
    ENCODER_PLOTS,
    ENCODER_SUMMARY,
    RAW,
    raw_images,
    timings_path,
)

from common import prepared_split, save_figure, write_skipped
from stage import stage_params

log = logging.getLogger("train_encoder")


def softening(config: dict, images_path: Path, train_rows: np.ndarray, n_sample: int = 512) -> list[float]:
    """The asinh softening per band: from params, or the sky noise measured on training cutouts."""
    if config.get("softening") not in (None, "auto"):
        return [float(v) for v in config["softening"]]
    with AstroclipFile(images_path) as images:
        sample = images.images(np.sort(train_rows[:n_sample]))
    return [float(v) for v in background_noise(sample)]


@exit_on_error
def main() -> None:
    params = stage_params(ENCODER_SCHEMA)
    model_params, training = section(params, "encoder.model"), section(params, "encoder.training")
    frames = {split: prepared_split(split) for split in schema.SPLITS}
    if IMAGE_ROW not in frames["train"]:
        reason = f"data source '{section(params, 'data.source')}' has no images and spectra"
        write_skipped(ENCODER, reason)
        write_json({"skipped": reason}, ENCODER_SUMMARY)
        write_curve([], ENCODER_CURVES / "loss_vs_epoch.csv")     # no epochs: the header alone
        ENCODER_PLOTS.mkdir(parents=True, exist_ok=True)
        return
    images_path = raw_images(RAW)
    rows = {split: frame[IMAGE_ROW].to_numpy() for split, frame in frames.items()}
    L.seed_everything(training["seed"], workers=True, verbose=False)
    config = {**model_params, "softening": softening(model_params, images_path, rows["train"])}
    model = ContrastiveModel(config, max_epochs=training["max_epochs"], seed=training["seed"])
    data = PairDataModule(images_path, rows, training["batch_size"], min_image_size=model.config.crop,
                          num_workers=training["num_workers"], seed=training["seed"])
    stores = Stores.from_params(params)
    with tracking.stage_run(stores, "train_encoder", params={"encoder": {**params["encoder"], "model": config}},
                            tags={"features": "image"}) as run, tempfile.TemporaryDirectory() as tmp:
        history = EpochHistory(Path(tmp) / "history.json")
        checkpoint = ModelCheckpoint(dirpath=tmp, monitor="val_loss", mode="min", save_top_k=1)
        devices = training.get("devices", 1)
        trainer = encoder_trainer(
            devices, training["batch_size"], max_epochs=training["max_epochs"],
            deterministic="warn",   # exact on CPU; on a GPU some pooling backward passes have no deterministic kernel
            callbacks=[EarlyStopping("val_loss", patience=training["patience"]), checkpoint, history,
                       TQDMProgressBar()],   # plain bars: readable in dvc's log too
            logger=MLFlowLogger(experiment_name=stores.experiment, tracking_uri=stores.tracking_uri,
                                run_id=run.info.run_id),
            log_every_n_steps=10, enable_model_summary=False)
        trainer.fit(model, datamodule=data)
        history.rows = history.recorded()
        best = ContrastiveModel.load_from_checkpoint(checkpoint.best_model_path, map_location="cpu")
        # the test split in this process, on one device (the same number as after a one-process training)
        tester = trainer if devices == 1 else encoder_trainer(1, training["batch_size"], logger=trainer.logger,
                                                              enable_model_summary=False)
        test_loss = tester.test(best, datamodule=data, verbose=False)[0]["test_loss"]

        with AstroclipFile(images_path) as file:
            test_images = file.images(rows["test"])
            test_spectra, _ = file.spectra(rows["test"])
        retrieval = retrieval_metrics(best.image_embedder().transform(test_images),
                                      best.spectrum_embedder().transform(test_spectra))
        ENCODER.mkdir(parents=True, exist_ok=True)
        (ENCODER / "skipped.json").unlink(missing_ok=True)
        best.save(ENCODER_CHECKPOINT)
        losses = [{k: row[k] for k in ("epoch", "train_loss", "val_loss")} for row in history.rows]
        summary = {"best_val_loss": min(row["val_loss"] for row in history.rows), "test_loss": float(test_loss),
                   "epochs_trained": len(history.rows),
                   "best_epoch": int(np.argmin([r["val_loss"] for r in history.rows])),
                   "n_train": len(rows["train"]), "chance_loss": float(np.log(training["batch_size"])),
                   "n_parameters": best.describe()["n_parameters"], **retrieval}
        # timings vary from run to run: in MLflow only, not in the model folder or the committed metrics
        timing = {"seconds_per_epoch": float(np.median([row["seconds"] for row in history.rows])),
                  "device": str(trainer.strategy.root_device), "devices": devices,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        write_json({**summary, "config": best.describe(), "history": losses}, ENCODER / "summary.json")
        write_json(summary, ENCODER_SUMMARY)
        write_json(timing, timings_path("train_encoder"))
        save_figure(data_plots.loss_curves(history.rows, "contrastive (InfoNCE) loss"), ENCODER_PLOTS / "loss.png")
        write_curve(loss_curve(history.rows), ENCODER_CURVES / "loss_vs_epoch.csv")
        tracking.log_metrics({f"summary.{k}": v for k, v in {**summary, **timing}.items()})
        tracking.log_artifacts([ENCODER / "summary.json"])
        tracking.log_artifacts([ENCODER_PLOTS], artifact_path="plots/encoder")
        log.info("encoder: val loss %.3f, test loss %.3f (chance %.3f); image->spectrum top-5 %.3f "
                 "(chance %.4f)", summary["best_val_loss"], test_loss, summary["chance_loss"],
                 retrieval["image_to_spectrum_top5"], retrieval["chance_top5"])


if __name__ == "__main__":
    main()
