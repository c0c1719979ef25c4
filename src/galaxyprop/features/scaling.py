"""Feature scaling, a tunable choice of the heads."""

from __future__ import annotations

from sklearn.base import TransformerMixin
from sklearn.preprocessing import FunctionTransformer, RobustScaler, StandardScaler

from galaxyprop.errors import GalaxypropError

SCALERS = {
    "standard": StandardScaler,
    "robust": RobustScaler,
    "none": lambda: FunctionTransformer(None),
}


def make_scaler(name: str) -> TransformerMixin:
    if name not in SCALERS:
        raise GalaxypropError(f"unknown feature scaling '{name}'; choose from {sorted(SCALERS)}")
    return SCALERS[name]()
