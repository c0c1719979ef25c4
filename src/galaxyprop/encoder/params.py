"""The schema of params `encoder`: the image-spectrum contrastive model, its training and its embedding."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.encoder.devices import check_devices
from galaxyprop.validation.rules import Schema, reuse


def _check_encoder(encoder: Mapping, params: Mapping) -> None:
    training = encoder.get("training") or {}
    if "devices" in training and "batch_size" in training:
        reuse("encoder.training.devices", lambda: check_devices(training["devices"], training["batch_size"]))


ENCODER_SCHEMA = Schema(
    rules={"encoder.model.embedding_dim": "count", "encoder.model.image_widths": "counts",
           "encoder.model.spectrum_widths": "counts", "encoder.model.aperture_radii": "list",
           "encoder.model.crop": "count", "encoder.model.max_shift": "natural",
           "encoder.model.spectrum_std_floor": "positive", "encoder.model.logit_scale": "positive",
           "encoder.model.learn_logit_scale": "bool", "encoder.model.learning_rate": "positive",
           "encoder.model.weight_decay": "nonneg", "encoder.training.max_epochs": "count",
           "encoder.training.patience": "natural", "encoder.training.batch_size": "count",
           "encoder.training.num_workers": "natural", "encoder.training.seed": "int", "encoder.training.devices": "count",
           "encoder.embedding.batch_size": "count", "encoder.embedding.chunk_size": "count"},
    checks={"encoder": _check_encoder})
