"""Filter response curves: the ones shipped with the kcorrect package, so labels and baselines share them, and
speclite's for bands kcorrect lacks (`speclite:lsst2023-u`: kcorrect 5.1.9 ships no LSST curves), which
`register_with_kcorrect` hands to kcorrect under that name so its fits use them too."""

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


#: A response named `speclite:<speclite filter name>` comes from speclite (e.g. `speclite:lsst2023-r`).
SPECLITE = "speclite:"


@functools.cache
def load_filter(name: str) -> Filter:
    """Read `<name>.dat` from kcorrect's responses (columns `lambda`, `pass`), or speclite's curve for a
    `speclite:` name (both photon-counting responses)."""
    from astropy.io import ascii

    if name.startswith(SPECLITE):
        return _speclite_filter(name)
    path = os.path.join(responses_dir(), f"{name}.dat")
    if not os.path.exists(path):
        raise GalaxypropError(f"unknown filter response '{name}' (no {path})")
    table = ascii.read(path, format="fixed_width")
    order = np.argsort(table["lambda"])
    return Filter(name, np.asarray(table["lambda"], float)[order], np.asarray(table["pass"], float)[order])


def _speclite_filter(name: str) -> Filter:
    import speclite.filters

    try:
        curve = speclite.filters.load_filter(name[len(SPECLITE):])
    except (ValueError, OSError, RuntimeError):
        groups = ", ".join(f"{g}-*" for g in speclite.filters.filter_group_names)
        raise GalaxypropError(f"unknown filter response '{name}' (speclite has {groups})") from None
    return Filter(name, np.asarray(curve.wavelength, float), np.asarray(curve.response, float))


def register_with_kcorrect(names) -> None:
    """Hand kcorrect the `speclite:` responses among `names` (its response table is a process-wide
    singleton it fills by name from its own files; a name already there is not read again)."""
    from kcorrect.response import Response, ResponseDict

    table = ResponseDict()
    for name in names:
        if name.startswith(SPECLITE) and name not in table:
            curve = load_filter(name)
            table[name] = Response(wave=curve.wave, response=curve.response)
