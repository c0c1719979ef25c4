"""Filter response curves: the ones shipped with the kcorrect package, so labels and baselines share them."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

from galaxyprop.errors import GalaxypropError


@dataclass(frozen=True)
class Filter:
    """A photon-counting response curve (wavelength in Angstrom)."""

    name: str
    wave: np.ndarray
    response: np.ndarray

    @property
    def pivot_wavelength(self) -> float:
        num = np.trapezoid(self.response * self.wave, self.wave)
        den = np.trapezoid(self.response / self.wave, self.wave)
        return float(np.sqrt(num / den))


def responses_dir() -> str:
    import kcorrect

    return os.path.join(os.path.dirname(kcorrect.__file__), "data", "responses")


@functools.cache
def load_filter(name: str) -> Filter:
    """Read `<name>.dat` from kcorrect's responses (columns `lambda`, `pass`)."""
    from astropy.io import ascii

    path = os.path.join(responses_dir(), f"{name}.dat")
    if not os.path.exists(path):
        raise GalaxypropError(f"unknown filter response '{name}' (no {path})")
    table = ascii.read(path, format="fixed_width")
    order = np.argsort(table["lambda"])
    return Filter(name, np.asarray(table["lambda"], float)[order], np.asarray(table["pass"], float)[order])
