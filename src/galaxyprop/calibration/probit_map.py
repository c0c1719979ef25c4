"""A monotone recalibration map of the PIT, in probit space.

With v = Phi^-1(PIT), the map g sends the validation sample's v-quantile at level Phi(t) to t, for
knots t = -2.5, -2, ..., 2.5 (those with enough galaxies beyond them), monotone (PCHIP) between the
knots and linear beyond with the slope of the outermost knots' chord (the tails are too sparse to
give a slope of their own). The calibrated CDF is Phi(g(Phi^-1(F))). A Gaussian density that is s times
too narrow has v = s * t, so g is the line t = v / s and the map is exact; the interval
[F'^-1(Phi(-1)), F'^-1(Phi(1))] covers 68.3 % of the validation truths by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.special import ndtr

from galaxyprop.errors import GalaxypropError

KNOTS = np.arange(-2.5, 2.51, 0.5)   # target probits; +-1 and +-2 are the served 68 % and 95 % intervals
PROBIT_CLIP = 12.0                   # |v| beyond this (PIT < 1e-33) is treated as this, for fitting
MIN_GAP = 1e-3                       # smallest step between knots in v (ties in a degenerate sample)


@dataclass(frozen=True)
class ProbitMap:
    """g: raw probit PIT -> calibrated probit PIT, through `knots_in` -> `knots_out` (both increasing)."""

    knots_in: tuple[float, ...]
    knots_out: tuple[float, ...]

    @classmethod
    def fit(cls, probit_pits: np.ndarray, min_tail: int = 10) -> ProbitMap:
        """The map that makes these probit PITs standard normal at the knots. A knot at level p is
        used only when `min_tail` galaxies or more lie beyond it (n p >= min_tail). (A straight line
        through the knots has less noise but, after the kernel, misses the served +-1 and +-2 sigma
        levels by up to 2 points of coverage: the knots are kept exact.)"""
        v = np.clip(np.asarray(probit_pits, float), -PROBIT_CLIP, PROBIT_CLIP)
        v = v[~np.isnan(v)]
        n = len(v)
        knots = KNOTS[n * ndtr(-np.abs(KNOTS)) >= min_tail]
        if len(knots) < 2:
            raise GalaxypropError(f"{n} PIT values are too few to fit a recalibration map "
                                  f"(need {int(np.ceil(min_tail / ndtr(-0.5)))} or more)")
        inputs = np.quantile(v, ndtr(knots))
        for i in range(1, len(inputs)):                          # strictly increasing even with ties
            inputs[i] = max(inputs[i], inputs[i - 1] + MIN_GAP)
        return cls(tuple(float(x) for x in inputs), tuple(float(t) for t in knots))

    @classmethod
    def identity(cls) -> ProbitMap:
        return cls((-1.0, 1.0), (-1.0, 1.0))

    def __call__(self, probits: np.ndarray) -> np.ndarray:
        v = np.asarray(probits, float)
        x, t = np.asarray(self.knots_in), np.asarray(self.knots_out)
        inside = PchipInterpolator(x, t, extrapolate=False)(np.clip(v, x[0], x[-1]))
        slope = (t[-1] - t[0]) / (x[-1] - x[0])
        with np.errstate(invalid="ignore"):   # +-inf stay +-inf
            out = np.where(v < x[0], t[0] + slope * (v - x[0]), np.where(v > x[-1], t[-1] + slope * (v - x[-1]), inside))
        return np.where(np.isinf(v), v, out)

    def describe(self) -> str:
        return ", ".join(f"{x:+.2f}->{t:+.1f}" for x, t in zip(self.knots_in, self.knots_out, strict=True))
