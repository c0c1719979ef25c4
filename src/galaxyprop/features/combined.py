"""Feature sources side by side: `measured+photometry` is the measured image features and the catalogue
photometry of the same galaxies, one matrix. A part may be reduced to its first principal components
(fitted on the training split), so that a 128-d embedding does not drown a dozen magnitudes.

The combined encoder turns what a user has into the same matrix: each part's own encoder on its own
input (cutouts for image parts, catalogue rows for catalogue parts), so a source mixing the two takes
`Multimodal` inputs (cutouts and catalogue rows together).
"""

from __future__ import annotations

import numpy as np

from galaxyprop.errors import GalaxypropError
from galaxyprop.features.multimodal import MULTIMODAL, Multimodal

SEPARATOR = "+"
#: The input kinds a part of a combined source may take (embeddings and spectra are not combined).
PART_KINDS = ("images", "catalog")


#: What a user gives the encoder of each built-in feature source (its FeatureEncoder.input_kind).
SOURCE_INPUTS = {"image": "images", "measured": "images", "photometry": "catalog", "photometry_grz": "catalog",
                 "external": "embeddings", "spectrum": "spectra"}


def source_input_kind(source: str) -> str | None:
    """The input kind of a feature source's encoder, combined ones included (None: unknown source)."""
    if not is_combined(source):
        return SOURCE_INPUTS.get(source)
    kinds = {SOURCE_INPUTS.get(part) for part in parts_of(source)}
    if not kinds <= set(PART_KINDS):
        return None
    return kinds.pop() if len(kinds) == 1 else MULTIMODAL


def parts_of(source: str) -> list[str]:
    """The sources a combined source is made of (`measured+photometry` -> [measured, photometry])."""
    parts = source.split(SEPARATOR)
    if len(parts) < 2 or not all(parts) or len(set(parts)) != len(parts):
        raise GalaxypropError(f"'{source}' is not a combined feature source (two or more distinct sources "
                              f"joined by '{SEPARATOR}', e.g. measured+photometry)")
    return parts


def is_combined(source: str) -> bool:
    return SEPARATOR in source


class CombinedFeatures:
    """The parts' encoders (name -> encoder, in order) and, per part, the number of principal
    components kept (absent: the part's features as they are)."""

    def __init__(self, parts: dict, components: dict[str, int] | None = None):
        kinds = {name: encoder.input_kind for name, encoder in parts.items()}
        unusable = {n: k for n, k in kinds.items() if k not in PART_KINDS}
        if unusable:
            raise GalaxypropError(f"feature sources {unusable} cannot be combined: only cutout and catalogue "
                                  "features can")
        self.parts = dict(parts)
        self.components = {n: int(c) for n, c in (components or {}).items() if n in self.parts and c}
        self.reducers_: dict[str, object] = {}   # part -> its fitted sklearn PCA

    @property
    def input_kind(self) -> str:
        kinds = {encoder.input_kind for encoder in self.parts.values()}
        return kinds.pop() if len(kinds) == 1 else MULTIMODAL

    @property
    def input_columns(self) -> list[str]:
        """The catalogue columns the catalogue parts read."""
        columns = [c for e in self.parts.values() for c in getattr(e, "input_columns", [])]
        return list(dict.fromkeys(columns))

    @property
    def names(self) -> list[str]:
        out = []
        for name, encoder in self.parts.items():
            n = self.components.get(name)
            out += [f"{name}_pc{i:02d}" for i in range(n)] if n else [f"{name}.{c}" for c in encoder.names]
        return out

    def fit(self, matrices: dict[str, np.ndarray]) -> CombinedFeatures:
        """Fit the reductions on each reduced part's training matrix (rows: the training galaxies)."""
        self.reducers_ = {}
        for name, n in self.components.items():
            matrix = np.asarray(matrices[name], np.float64)
            if n > min(matrix.shape):
                raise GalaxypropError(f"{n} principal components of '{name}' asked, but it has "
                                      f"{matrix.shape[1]} features of {matrix.shape[0]} galaxies")
            from sklearn.decomposition import PCA  # only where a part is reduced (schemas import this module)

            self.reducers_[name] = PCA(n, svd_solver="full").fit(matrix)
        return self

    def combine(self, matrices: dict[str, np.ndarray]) -> np.ndarray:
        """The combined matrix from each part's features of the same galaxies, row for row."""
        blocks = []
        for name in self.parts:
            block = np.asarray(matrices[name], np.float32)
            if name in self.reducers_:
                block = self.reducers_[name].transform(block.astype(np.float64))
            blocks.append(block)
        return np.hstack(blocks).astype(np.float32)

    def transform(self, inputs) -> np.ndarray:
        """Each part's encoder on its input: cutouts for image parts, catalogue rows for the others."""
        if self.input_kind == MULTIMODAL:
            if not isinstance(inputs, Multimodal):
                raise GalaxypropError("this model takes cutouts and catalogue fluxes together")
            inputs = inputs.checked()
            given = {"images": inputs.images, "catalog": inputs.catalog}
            matrices = {name: e.transform(given[e.input_kind]) for name, e in self.parts.items()}
        else:
            matrices = {name: e.transform(inputs) for name, e in self.parts.items()}
        return self.combine(matrices)
