"""The astronomers' baseline: kcorrect templates fitted to the photometry at a given redshift."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError
from galaxyprop.heads.base import Head, Prediction, check_features, check_target
from galaxyprop.physics.kcorrect_fit import fit_kcorrection

RESPONSE_OUT, BAND_SHIFT = "sdss_r0", 0.1      # the target K(^{0.1}r)
ANY_PHOTSYS = "*"                              # a catalogue's responses, whatever the row's system


class KcorrectHead(Head):
    """K(^{band_shift}Q) from observed R by a template fit; its features are fluxes, ivars and z.

    There is nothing to learn: `fit` only checks the layout (`y` may be None). The spread is the
    Monte-Carlo scatter over `n_mc` refits with the fluxes perturbed by their errors (NaN without).
    """

    name = "kcorrect"

    def __init__(self, *, responses: tuple[str, ...], response_out: str = "sdss_r0",
                 response_map: str = "sdss_r0", band_shift: float = 0.1, n_mc: int = 0, seed: int = 0):
        self.responses = tuple(responses)
        self.response_out = response_out
        self.response_map = response_map
        self.band_shift = band_shift
        self.n_mc = n_mc
        self.seed = seed

    @staticmethod
    def design_matrix(frame: pd.DataFrame, bands: list[str], redshift: np.ndarray) -> np.ndarray:
        """Columns: fluxes of `bands`, their inverse variances, then the redshift to fit at."""
        flux = frame[[schema.flux_column(b) for b in bands]].to_numpy(float)
        ivar = frame[[schema.ivar_column(b) for b in bands]].to_numpy(float)
        return np.hstack([flux, ivar, np.asarray(redshift, float)[:, None]])

    def fit(self, X: np.ndarray, y: np.ndarray | None, *, validation: tuple[np.ndarray, np.ndarray] | None = None,
            callbacks: Sequence = ()) -> KcorrectHead:
        """Check the layout of `X` (and that `y`, when given, has a finite value per row)."""
        X = check_features(X, 2 * len(self.responses) + 1)
        if y is not None:
            check_target(y, len(X))
        return self

    def predict(self, X: np.ndarray) -> Prediction:
        X = np.asarray(check_features(X, 2 * len(self.responses) + 1), dtype=float)
        n = len(self.responses)
        result = fit_kcorrection(X[:, :n], X[:, n:2 * n], X[:, -1], self.responses,
                                 self.response_out, self.response_map, self.band_shift,
                                 self.n_mc, self.seed)
        return Prediction(result.kcorrection, result.spread)


def kcorrect_by_photsys(frame: pd.DataFrame, redshift: np.ndarray, bands: dict, n_mc: int = 0,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K(^{0.1}r) of every row fitted at `redshift` with the filter curves of its own photometric system.

    `bands` is the prepare stage's record: `bands` (names), `responses` ({band: {PHOTSYS or '*': curve}})
    and `label_band` (the observed band K maps from). Failed fits are NaN.
    """
    value, spread = np.full(len(frame), np.nan), np.full(len(frame), np.nan)
    photsys = frame[schema.PHOTSYS].to_numpy() if schema.PHOTSYS in frame else np.full(len(frame), ANY_PHOTSYS)
    redshift = np.asarray(redshift, float)
    for system in np.unique(photsys):
        rows = photsys == system
        curve = {band: systems.get(system, systems.get(ANY_PHOTSYS)) for band, systems in bands["responses"].items()}
        missing = [b for b in dict.fromkeys([*bands["bands"], bands["label_band"]]) if curve.get(b) is None]
        if missing:
            raise GalaxypropError(f"no filter curve for band(s) {missing} of photometric system '{system}'")
        head = KcorrectHead(responses=tuple(curve[b] for b in bands["bands"]), response_out=RESPONSE_OUT,
                            response_map=curve[bands["label_band"]], band_shift=BAND_SHIFT, n_mc=n_mc, seed=seed)
        X = KcorrectHead.design_matrix(frame[rows], bands["bands"], redshift[rows])
        value[rows], spread[rows] = head.fit(X, None).predict(X)
    return value, spread
