"""Every head behind one interface (heads.base.Head): feature heads (knn, gbt, mlp, clap), the image CNN,
the multimodal CNN (cutouts and catalogue features together), the domain-adversarial MLP
(heads.adversarial) and the kcorrect template-fit baseline; `make_head` builds one by name.

Each head trained by name lives in its own package `heads/<name>/`, so that a pipeline stage training
one head declares that head's folder as its code, and an edit to one head reruns only its stages. The
tables below name each head's class; its module is `galaxyprop.heads.<name>`, imported only when the
head is made (loading a KNN model does not import torch)."""

from __future__ import annotations

import importlib

from galaxyprop.errors import GalaxypropError

#: Heads that learn from a feature matrix, by the name used in params and metrics -> their class.
FEATURE_HEADS = {"knn": "KNNHead", "gbt": "GradientBoostingHead", "mlp": "MLPHead", "clap": "ClapHead",
                 # LSST DESC RAIL's estimators, through one adapter (heads.rail_adapter; `galaxyprop[rail]`)
                 "rail_flexzboost": "FlexZBoostHead", "rail_gpz": "GPzHead", "rail_dnf": "DNFHead",
                 "rail_cmnn": "CMNNHead", "rail_knn": "RailKNNHead"}
#: Heads that learn from the image cutouts themselves; their results are keyed by the head alone.
IMAGE_HEADS = {"cnn": "CNNHead"}
#: Heads that learn from the cutouts and catalogue features together (features.multimodal.ImagesAndFeatures).
MULTIMODAL_HEADS = {"cnn_mm": "CNNMultimodalHead"}
ALL_HEADS = {**FEATURE_HEADS, **IMAGE_HEADS, **MULTIMODAL_HEADS}
#: Heads whose answer for a galaxy depends on the other galaxies of its batch, and why: compared, never
#: served (`registry.candidate_heads` refuses them).
BATCH_DEPENDENT_HEADS = {
    "rail_dnf": "RAIL's DNF keeps for every galaxy as many neighbours as the batch's largest count "
                "(rail.estimation.algos.dnf.compute_photoz_mean_routliers)",
}


def head_module(name: str) -> str:
    """The module of the head called `name` in params (`galaxyprop.heads.knn`)."""
    if name not in ALL_HEADS:
        raise GalaxypropError(f"unknown head '{name}'; choose from {sorted(ALL_HEADS)}")
    return f"{__name__}.{name}"


def head_class(name: str) -> type:
    return getattr(importlib.import_module(head_module(name)), ALL_HEADS[name])


def make_head(name: str, **hyperparameters):
    cls = head_class(name)
    try:
        return cls(**hyperparameters)
    except TypeError as err:
        raise GalaxypropError(f"head '{name}': bad hyperparameters ({err})") from None


__all__ = ["ALL_HEADS", "BATCH_DEPENDENT_HEADS", "FEATURE_HEADS",
           "IMAGE_HEADS", "MULTIMODAL_HEADS", "head_class", "head_module", "make_head"]
