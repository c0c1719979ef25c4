"""Inputs of models that take a galaxy's cutouts and its catalogue fluxes together.

`Multimodal` is what a user gives such a model (the raw inputs: cutouts in nanomaggies per pixel and
catalogue rows with flux columns); `ImagesAndFeatures` is what a multimodal head is fitted on (the
checked cutouts and a feature matrix of the same galaxies, row for row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from galaxyprop.errors import GalaxypropError

#: The input kind of models that take both (FeatureEncoder.input_kind).
MULTIMODAL = "multimodal"
#: The kind of registered model (what its user brings) of each FeatureEncoder.input_kind; models on
#: embeddings or spectra made elsewhere have none.
REGISTERED_KINDS = {MULTIMODAL: "multimodal", "images": "images", "catalog": "catalogue"}


@dataclass(frozen=True)
class Multimodal:
    """Cutouts (N, 3, H, W) or (N, H, W, 3) and catalogue rows (N rows) of the same galaxies, in order."""

    images: np.ndarray
    catalog: pd.DataFrame

    def __len__(self) -> int:
        return len(self.catalog)

    def checked(self) -> Multimodal:
        """A clear error when either input is missing or the two disagree on the number of galaxies."""
        if self.images is None or self.catalog is None:
            missing = "cutouts" if self.images is None else "catalogue fluxes"
            raise GalaxypropError(f"this model takes cutouts and catalogue fluxes together; the {missing} are missing")
        if len(self.images) != len(self.catalog):
            raise GalaxypropError(f"{len(self.images)} cutouts but {len(self.catalog)} catalogue rows: "
                                  "give one catalogue row per cutout, in the same order")
        return self

    def rows(self, index) -> Multimodal:
        return Multimodal(self.images[index], self.catalog.iloc[index].reset_index(drop=True))


@dataclass(frozen=True)
class ImagesAndFeatures:
    """A multimodal head's inputs: float32 cutouts (N, 3, H, W) and features (N, d), row for row."""

    images: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return len(self.features)

    def rows(self, index) -> ImagesAndFeatures:
        return ImagesAndFeatures(self.images[index], self.features[index])


class CutoutsAndPhotometry:
    """The feature encoder of multimodal heads (cnn_mm): the checked cutouts as they are, and the
    catalogue rows through a photometry encoder (magnitudes and colours)."""

    input_kind = MULTIMODAL

    def __init__(self, photometry, min_size: int = 1):
        self.photometry = photometry
        self.min_size = int(min_size)

    @property
    def input_columns(self) -> list[str]:
        return list(self.photometry.input_columns)

    @property
    def names(self) -> list[str]:
        return ["g", "r", "z", *self.photometry.names]

    def transform(self, inputs: Multimodal) -> ImagesAndFeatures:
        from galaxyprop.features.images import channels_first

        if not isinstance(inputs, Multimodal):
            raise GalaxypropError("this model takes cutouts and catalogue fluxes together")
        inputs = inputs.checked()
        return ImagesAndFeatures(channels_first(inputs.images, min_size=self.min_size, what="cutouts"),
                                 self.photometry.transform(inputs.catalog))
