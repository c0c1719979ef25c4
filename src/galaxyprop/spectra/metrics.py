"""Metrics of predicted spectra: latent errors, reduced chi^2, and spectral indices (Dn4000, EWs).

Spectral indices take observed-frame wavelengths (vacuum, as DESI's and the mock's: the kcorrect
templates' lines sit at vacuum wavelengths, e.g. Halpha peaks at ~6564.8 A) and shift the rest-frame
band definitions by (1 + z). Band means integrate the linear interpolant of the pixels exactly, so
a band that is not fully inside the spectrum, or touches a non-finite pixel, gives NaN.
"""

from __future__ import annotations

import numpy as np

from galaxyprop.evaluation.metrics.point import sigma_nmad

#: Balogh et al. (1999) narrow 4000 A break: mean f_nu in 4000-4100 A over 3850-3950 A (rest).
DN4000_BANDS = ((3850.0, 3950.0), (4000.0, 4100.0))
#: Rest-frame bands (A, vacuum) of the emission lines: the line, the blue and the red continuum.
#: [OII]3727 (doublet 3727.09 + 3729.88): Balogh et al. (1999). Halpha (6564.61): a line band wide
#: enough for the mock's template resolution (~5.6 A pixels) between the [NII] 6549.9 and 6585.3 lines'
#: cores, continuum beyond [NII] as in the usual definitions (6490-6535, 6600-6640).
LINES = {
    "oii": {"centre": 3728.48, "line": (3713.0, 3741.0), "blue": (3653.0, 3713.0), "red": (3741.0, 3801.0)},
    "halpha": {"centre": 6564.61, "line": (6552.0, 6577.0), "blue": (6490.0, 6535.0), "red": (6600.0, 6640.0)},
}


# -- latents ------------------------------------------------------------------------------------
def _latent_arrays(true: np.ndarray, pred: np.ndarray, train_latents: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    true, pred = np.atleast_2d(np.asarray(true, float)), np.atleast_2d(np.asarray(pred, float))
    train = np.atleast_2d(np.asarray(train_latents, float))
    if true.shape != pred.shape or train.shape[1] != true.shape[1]:
        raise ValueError(f"latent shapes differ: true {true.shape}, pred {pred.shape}, train {train.shape}")
    mse = np.mean((pred - true) ** 2, axis=0)
    variance = np.mean((true - train.mean(axis=0)) ** 2, axis=0)
    return mse, variance


def latent_mse_per_component(true: np.ndarray, pred: np.ndarray, train_latents: np.ndarray) -> np.ndarray:
    """MSE_k / Var_k per latent, Var_k the mean squared deviation of `true` from the training mean."""
    mse, variance = _latent_arrays(true, pred, train_latents)
    return mse / variance


def latent_mse_relative(true: np.ndarray, pred: np.ndarray, train_latents: np.ndarray) -> float:
    """sum_k MSE_k / sum_k Var_k: the fraction of the latents' variance (about the training mean) left
    unexplained, weighted by each latent's variance. Predicting the training mean scores 1, the truth 0."""
    mse, variance = _latent_arrays(true, pred, train_latents)
    return float(mse.sum() / variance.sum())


def latent_mse_relative_unweighted(true: np.ndarray, pred: np.ndarray, train_latents: np.ndarray) -> float:
    """mean_k MSE_k / Var_k: every latent counts alike, however little variance it carries."""
    return float(np.mean(latent_mse_per_component(true, pred, train_latents)))


# -- goodness of fit ----------------------------------------------------------------------------
def reduced_chi2(observed: np.ndarray, ivar: np.ndarray, model: np.ndarray, mask: np.ndarray | None = None,
                 n_latent: int = 0) -> np.ndarray:
    """Per-spectrum chi^2 / dof over the pixels with ivar > 0, finite data and finite model (and `mask`
    True); dof = n_pixels - n_latent - 2 (the redshift and the norm); NaN where dof < 1."""
    observed, ivar, model = (np.atleast_2d(np.asarray(a, float)) for a in (observed, ivar, model))
    use = (ivar > 0) & np.isfinite(ivar) & np.isfinite(observed) & np.isfinite(model)
    if mask is not None:
        use &= np.broadcast_to(np.asarray(mask, bool), use.shape)
    chi2 = np.where(use, ivar * (observed - model) ** 2, 0.0).sum(axis=1)
    dof = use.sum(axis=1) - n_latent - 2
    return np.where(dof >= 1, chi2 / np.maximum(dof, 1), np.nan)


def median_reduced_chi2(observed: np.ndarray, ivar: np.ndarray, model: np.ndarray,
                        mask: np.ndarray | None = None, n_latent: int = 0) -> float:
    """The median over spectra of `reduced_chi2`."""
    return float(np.nanmedian(reduced_chi2(observed, ivar, model, mask, n_latent)))


# -- spectral indices ---------------------------------------------------------------------------
def band_integral(wave: np.ndarray, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integral over [lo_i, hi_i] of the linear interpolant of each row of `values` (n, p) on `wave`
    (p,, increasing); NaN where the band leaves the grid or touches a non-finite pixel."""
    wave = np.asarray(wave, float)
    values = np.atleast_2d(np.asarray(values, float))
    lo = np.broadcast_to(np.asarray(lo, float), (len(values),))
    hi = np.broadcast_to(np.asarray(hi, float), (len(values),))
    bad = ~np.isfinite(values)
    filled = np.where(bad, 0.0, values)
    segments = 0.5 * (filled[:, 1:] + filled[:, :-1]) * np.diff(wave)
    cumulative = np.concatenate([np.zeros((len(values), 1)), np.cumsum(segments, axis=1)], axis=1)
    bad_segment = bad[:, 1:] | bad[:, :-1]
    bad_count = np.concatenate([np.zeros((len(values), 1)), np.cumsum(bad_segment, axis=1)], axis=1)
    rows = np.arange(len(values))

    def primitive(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.clip(np.searchsorted(wave, x, side="right") - 1, 0, len(wave) - 2)
        t = np.clip(x - wave[i], 0.0, None)
        slope = (filled[rows, i + 1] - filled[rows, i]) / (wave[i + 1] - wave[i])
        return cumulative[rows, i] + t * filled[rows, i] + 0.5 * slope * t**2, i

    upper, i_hi = primitive(hi)
    lower, i_lo = primitive(lo)
    touched_bad = bad_count[rows, i_hi + 1] - bad_count[rows, i_lo] > 0
    inside = (lo >= wave[0]) & (hi <= wave[-1]) & (hi > lo)
    return np.where(inside & ~touched_bad, upper - lower, np.nan)


def _band_mean(wave: np.ndarray, values: np.ndarray, band: tuple[float, float], z: np.ndarray) -> np.ndarray:
    lo, hi = band[0] * (1.0 + z), band[1] * (1.0 + z)
    return band_integral(wave, values, lo, hi) / (hi - lo)


def _prepare(wave_obs: np.ndarray, flux: np.ndarray, z) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    flux = np.asarray(flux, float)
    single = flux.ndim == 1
    flux = np.atleast_2d(flux)
    z = np.broadcast_to(np.asarray(z, float), (len(flux),))
    return np.asarray(wave_obs, float), flux, z, single


def dn4000(wave_obs: np.ndarray, flux: np.ndarray, z) -> np.ndarray | float:
    """Balogh et al. (1999) Dn4000 of f_lambda spectra (n, p) or (p,): the mean f_nu (proportional to
    f_lambda lambda^2) in 4000-4100 A over that in 3850-3950 A, rest frame; NaN where not covered."""
    wave, flux, z, single = _prepare(wave_obs, flux, z)
    f_nu = flux * wave[None, :] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = _band_mean(wave, f_nu, DN4000_BANDS[1], z) / _band_mean(wave, f_nu, DN4000_BANDS[0], z)
    return float(ratio[0]) if single else ratio


def line_equivalent_width(wave_obs: np.ndarray, flux: np.ndarray, z, line: str = "halpha") -> np.ndarray | float:
    """Rest-frame equivalent width (A, positive for emission) of `line` ('halpha' or 'oii', see
    LINES): integral over the line band of (f - f_c) / f_c, divided by 1 + z, the continuum f_c the
    straight line through the mean flux of the blue and red side bands at their centres."""
    if line not in LINES:
        raise ValueError(f"unknown line {line!r}; choose from {sorted(LINES)}")
    bands = LINES[line]
    wave, flux, z, single = _prepare(wave_obs, flux, z)
    blue, red = _band_mean(wave, flux, bands["blue"], z), _band_mean(wave, flux, bands["red"], z)
    blue_centre, red_centre = np.mean(bands["blue"]) * (1 + z), np.mean(bands["red"]) * (1 + z)
    slope = (red - blue) / (red_centre - blue_centre)
    continuum = blue[:, None] + slope[:, None] * (wave[None, :] - blue_centre[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.where(continuum > 0, flux / continuum - 1.0, np.nan)
    lo, hi = bands["line"][0] * (1.0 + z), bands["line"][1] * (1.0 + z)
    # Only the line band's pixels matter: blank the rest so a NaN elsewhere cannot spoil the integral.
    near = (wave[None, :] >= lo[:, None] - 2 * np.diff(wave).max()) & (wave[None, :] <= hi[:, None] + 2 * np.diff(wave).max())
    width = band_integral(wave, np.where(near, contrast, 0.0), lo, hi) / (1.0 + z)
    return float(width[0]) if single else width


# -- recovery of a derived quantity -------------------------------------------------------------
def recovery(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R^2, bias (median pred - true), scatter (sigma_NMAD of pred - true) and n over finite pairs."""
    true, pred = np.asarray(true, float).ravel(), np.asarray(pred, float).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"true {true.shape} and pred {pred.shape} differ")
    ok = np.isfinite(true) & np.isfinite(pred)
    true, pred = true[ok], pred[ok]
    if not len(true):
        return {"r2": float("nan"), "bias": float("nan"), "scatter": float("nan"), "n": 0}
    residual = pred - true
    total = float(((true - true.mean()) ** 2).sum())
    return {"r2": 1.0 - float((residual**2).sum()) / total if total > 0 else float("nan"),
            "bias": float(np.median(residual)), "scatter": sigma_nmad(residual), "n": int(len(true))}
