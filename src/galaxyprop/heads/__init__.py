"""Heads behind one interface: `fit(X, y)`, `predict(X)` -> value and spread, `save`/`load`."""

from __future__ import annotations

from galaxyprop.errors import GalaxypropError
from galaxyprop.heads.base import Head, Prediction
from galaxyprop.heads.gbt import GradientBoostingHead
from galaxyprop.heads.knn import KNNHead

#: Heads that learn from a feature matrix, by the name used in params and metrics.
FEATURE_HEADS: dict[str, type[Head]] = {
    KNNHead.name: KNNHead,
    GradientBoostingHead.name: GradientBoostingHead,
}


def make_head(name: str, **hyperparameters) -> Head:
    if name not in FEATURE_HEADS:
        raise GalaxypropError(f"unknown head '{name}'; choose from {sorted(FEATURE_HEADS)}")
    try:
        return FEATURE_HEADS[name](**hyperparameters)
    except TypeError as err:
        raise GalaxypropError(f"head '{name}': bad hyperparameters ({err})") from None


__all__ = ["FEATURE_HEADS", "Head", "Prediction", "make_head"]
