"""The astronomers' baseline: kcorrect templates fitted to the photometry at a given redshift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from galaxyprop.data import schema
from galaxyprop.heads.base import Head, Prediction, check_features
from galaxyprop.physics.kcorrect_fit import fit_kcorrection


class KcorrectHead(Head):
    """K(^{band_shift}Q) from observed R by a template fit; its features are fluxes, ivars and z.

    There is nothing to learn: `fit` only checks the layout. The spread is the Monte-Carlo
    scatter over `n_mc` refits with the fluxes perturbed by their errors.
    """

    name = "kcorrect"

    def __init__(self, responses: tuple[str, ...], response_out: str = "sdss_r0",
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

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "KcorrectHead":
        check_features(X, 2 * len(self.responses) + 1)
        return self

    def predict(self, X: np.ndarray) -> Prediction:
        X = np.asarray(check_features(X, 2 * len(self.responses) + 1), dtype=float)
        n = len(self.responses)
        result = fit_kcorrection(X[:, :n], X[:, n:2 * n], X[:, -1], self.responses,
                                 self.response_out, self.response_map, self.band_shift,
                                 self.n_mc, self.seed)
        return Prediction(result.kcorrection, result.spread)
