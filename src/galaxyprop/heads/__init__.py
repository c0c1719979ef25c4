"""Every head behind one interface (heads.base.Head): feature heads (knn, gbt, mlp, clap), the image CNN,
the multimodal CNN (cutouts and catalogue features together), the domain-adversarial MLP
(heads.adversarial) and the kcorrect template-fit baseline; `make_head` builds one by name."""

from __future__ import annotations

import importlib

from galaxyprop.errors import GalaxypropError
from galaxyprop.heads.base import Head, Prediction

#: Heads that learn from a feature matrix, by the name used in params and metrics (imported when
#: made, so loading a KNN model does not import torch).
FEATURE_HEADS = {"knn": "galaxyprop.heads.knn:KNNHead",
                 "gbt": "galaxyprop.heads.gbt:GradientBoostingHead",
                 "mlp": "galaxyprop.heads.mlp:MLPHead",
                 "clap": "galaxyprop.heads.clap:ClapHead"}
#: Heads that learn from the image cutouts themselves; their results are keyed by the head alone.
IMAGE_HEADS = {"cnn": "galaxyprop.heads.cnn:CNNHead"}
#: Heads that learn from the cutouts and catalogue features together (features.multimodal.ImagesAndFeatures).
MULTIMODAL_HEADS = {"cnn_mm": "galaxyprop.heads.cnn_mm:CNNMultimodalHead"}


def head_class(name: str) -> type[Head]:
    heads = {**FEATURE_HEADS, **IMAGE_HEADS, **MULTIMODAL_HEADS}
    if name not in heads:
        raise GalaxypropError(f"unknown head '{name}'; choose from {sorted(heads)}")
    module, _, attribute = heads[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def make_head(name: str, **hyperparameters) -> Head:
    cls = head_class(name)
    try:
        return cls(**hyperparameters)
    except TypeError as err:
        raise GalaxypropError(f"head '{name}': bad hyperparameters ({err})") from None


__all__ = ["FEATURE_HEADS", "IMAGE_HEADS", "MULTIMODAL_HEADS", "Head", "Prediction", "head_class", "make_head"]
