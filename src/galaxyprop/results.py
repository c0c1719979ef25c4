"""A result: what one head learned from one kind of input. A feature head on a feature source is named
`<head>@<features>` (`knn@image`, `gbt@measured+photometry`); an image head (`cnn`), a multimodal head
(`cnn_mm`) or a kcorrect baseline by the head alone (`kcorrect_photoz@photometry`: the baseline at the
photo-z of those features). The metrics contract keys a result on the pipeline's default features by its
head alone (`knn`). Names are parsed here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from galaxyprop.heads import FEATURE_HEADS, IMAGE_HEADS, MULTIMODAL_HEADS

SEPARATOR = "@"
#: What the multimodal heads learn from: the cutouts and the catalogue photometry features.
MULTIMODAL_INPUTS = "cutouts+photometry"
#: What the image heads learn from (cnn: the cutouts; the multimodal heads: `MULTIMODAL_INPUTS`), which a
#: target's `features` may list like a feature source.
CUTOUTS = "cutouts"
IMAGE_HEAD_INPUTS = (CUTOUTS, MULTIMODAL_INPUTS)


@dataclass(frozen=True)
class ResultName:
    head: str
    features: str = ""

    @classmethod
    def parse(cls, name: str) -> ResultName:
        head, _, features = str(name).partition(SEPARATOR)
        return cls(head, features)

    @classmethod
    def of_key(cls, key: str, default_features: str) -> ResultName:
        """The result behind a metrics key (`knn` -> `knn@image`); image heads and baselines keep theirs."""
        name = cls.parse(key)
        return cls(name.head, default_features) if not name.features and name.head in FEATURE_HEADS else name

    def __str__(self) -> str:
        return f"{self.head}{SEPARATOR}{self.features}" if self.features else self.head

    def key(self, default_features: str) -> str:
        """The contract's key: `knn` on the default features, `knn@photometry` on others."""
        return self.head if self.features in ("", default_features) else str(self)

    def inputs(self, default_features: str) -> str:
        """What it learned from: a feature source, `cutouts` (image heads), `cutouts+photometry`
        (multimodal heads), or for the kcorrect baselines the redshift they were fitted at (`spec-z`,
        `photo-z:<features>`)."""
        if self.head == "kcorrect_specz":
            return "spec-z"
        if self.head == "kcorrect_photoz":
            return f"photo-z:{self.features or default_features}"
        if self.head in MULTIMODAL_HEADS:
            return MULTIMODAL_INPUTS
        return CUTOUTS if self.head in IMAGE_HEADS else self.features


def result_name(head: str, features: str) -> str:
    """How a head's model folder and predictions file are named: `knn@image`."""
    return str(ResultName(head, features))


def metrics_key(name: str, default_features: str) -> str:
    return ResultName.parse(name).key(default_features)


def result_of(key: str, default_features: str) -> str:
    return str(ResultName.of_key(key, default_features))


def inputs_of(key: str, default_features: str) -> str:
    return ResultName.of_key(key, default_features).inputs(default_features)
