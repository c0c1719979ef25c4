"""A compact latent of DESI spectra: rest-frame resampling, per-spectrum normalisation and a weighted PCA.

A spectrum (flux, ivar on the DESI grid, 1e-17 erg/s/cm^2/A) at redshift z becomes
`log_norm` (log10 of its median flux in a common rest window, in the input units) and `k` latents:
the weighted least-squares coefficients of the normalised rest-frame spectrum on the principal
components. `decode` inverts it back onto the observed DESI grid, in the input units.

Choices (all constructor options):
- Rest grid: log-wavelength bins of `log_step` (natural log; default 5e-4, 150 km/s: 1.3 A at
  2600 A, 2 A at 4000 A, 3.3 A at Halpha; ~2600 bins for 0 < z < 0.37; 1e-3 halves the fit time
  but smears the mock's emission lines, ~5 % L2 decode error against ~2 %) over
  DESI range / (1 + z_max) .. DESI range / (1 + z_min) of the training redshifts. Each observed
  pixel goes to the bin holding its rest wavelength; a bin's flux is the ivar-weighted mean of its
  pixels and its ivar their sum. Bins a galaxy does not cover, and pixels with ivar <= 0 or a
  non-finite flux, carry weight 0.
- Normalisation: median observed flux of the good pixels in the rest window `norm_window`
  (default 5300-5800 A: no strong lines, covered for z < 0.69); a spectrum whose window is not
  covered (fewer than `min_window_pixels` good pixels) or whose median is not positive has
  `log_norm` NaN, is left out of the fit and encodes to NaN.
- PCA: EM / alternating weighted least squares (Bailey 2012; Roweis 1998) of the rank-k model
  x = mean + c . components with per-bin weights (ivar x norm^2 with `weighting="ivar"`, 1 for
  every covered bin with `"coverage"`), the mean fitted jointly; started from a randomized SVD of
  the mean-filled residuals, then rotated to orthonormal components ordered by latent variance.
  Sparsely covered bins are shrunk towards the mean by a small ridge.
- Decode: the rest model is linearly interpolated in log wavelength at lambda_obs / (1 + z) and
  scaled by 10^log_norm; observed pixels outside the rest grid are NaN (never a made-up zero).

Reproducible: the same training spectra give the same bytes in every run, whatever the thread count.
Everything is float64; the randomized SVD that starts the fit is seeded (`seed`); each component's
largest-|value| bin is positive; and the fit, the projections and the decoding run on one BLAS / OpenMP
thread (`resources.one_thread`): with more, OpenBLAS splits the long sums over bins among them and
the last digit, which the iterations carry into every stored number, depends on the thread count.
"""

from __future__ import annotations

import numpy as np

from galaxyprop.data.astroclip import DESI_WAVE, N_SPECTRUM_PIXELS
from galaxyprop.errors import GalaxypropError
from galaxyprop.resources import one_thread

CHUNK_ROWS = 256          # spectra resampled at a time (bounds the (rows, 7781) temporaries)
WEIGHTINGS = ("ivar", "coverage")


class SpectralLatent:
    """Rest-frame weighted PCA of spectra: `fit`, `encode` -> (latents, log_norm), `decode` -> flux."""

    def __init__(self, n_components: int = 6, *, log_step: float = 5e-4,
                 norm_window: tuple[float, float] = (5300.0, 5800.0),
                 rest_range: tuple[float, float] | None = None, weighting: str = "ivar",
                 n_iter: int = 30, tol: float = 1e-5, ridge: float = 1e-3, min_window_pixels: int = 20,
                 seed: int = 0):
        self.n_components = n_components
        self.log_step = log_step
        self.norm_window = norm_window
        self.rest_range = rest_range
        self.weighting = weighting
        self.n_iter = n_iter
        self.tol = tol
        self.ridge = ridge
        self.min_window_pixels = min_window_pixels
        self.seed = seed

    # -- fitting -------------------------------------------------------------------------------
    @one_thread()
    def fit(self, flux: np.ndarray, ivar: np.ndarray | None, z: np.ndarray) -> SpectralLatent:
        """Learn the rest grid, the mean spectrum and the components from training spectra."""
        if self.n_components < 0:
            raise GalaxypropError(f"n_components must be >= 0, got {self.n_components}")
        if self.weighting not in WEIGHTINGS:
            raise GalaxypropError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        flux, ivar, z = _check_spectra(flux, ivar, z)
        lo, hi = self.rest_range or (DESI_WAVE[0] / (1.0 + z.max()), DESI_WAVE[-1] / (1.0 + z.min()))
        if not 0 < lo < hi:
            raise GalaxypropError(f"bad rest-frame range {lo}..{hi} A")
        self.log_wave_start_ = float(np.log(lo))
        n_bins = int(np.ceil((np.log(hi) - np.log(lo)) / self.log_step))
        self.wave_rest_ = np.exp(self.log_wave_start_ + (np.arange(n_bins) + 0.5) * self.log_step)
        self.z_range_ = (float(z.min()), float(z.max()))
        x, w, log_norm = self.to_rest(flux, ivar, z)
        good = np.isfinite(log_norm)
        if good.sum() < max(2, self.n_components + 1):
            raise GalaxypropError(f"only {int(good.sum())} of {len(z)} training spectra cover the normalisation "
                                  f"window {self.norm_window} A with a positive median flux")
        x, w = x[good], w[good]
        self.n_train_, self.n_excluded_ = int(good.sum()), int((~good).sum())
        self.mean_, self.components_, latents, self.latent_ridge_ = _weighted_pca(
            x, w, self.n_components, self.n_iter, self.tol, self.ridge, self.seed)
        self.explained_variance_ = latents.var(axis=0)
        self.train_latents_ = latents
        # Weighted over the bins each spectrum covers, as the fit itself: the total variance about the
        # mean, each component's share of it, and the fraction the k-component model leaves.
        mean_fill = np.where(np.isfinite(self.mean_), self.mean_, 0.0)
        total = float((w * (x - mean_fill) ** 2).sum())
        self.explained_variance_ratio_ = (latents**2 * (w @ (self.components_**2).T)).sum(axis=0) / total
        model = mean_fill + latents @ self.components_
        self.fraction_left_ = float((w * (x - model) ** 2).sum()) / total
        return self

    # -- the rest frame ------------------------------------------------------------------------
    def to_rest(self, flux: np.ndarray, ivar: np.ndarray | None, z: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised rest-frame flux (n, n_bins), its weights and log10 norm (n,) (NaN: not normalisable)."""
        flux, ivar, z = _check_spectra(flux, ivar, z)
        n, n_bins = len(z), len(self.wave_rest_)
        x, w = np.zeros((n, n_bins)), np.zeros((n, n_bins))
        log_norm = np.full(n, np.nan)
        log_wave = np.log(DESI_WAVE)
        for start in range(0, n, CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            f = flux[rows].astype(float)
            iv = np.ones_like(f) if ivar is None else ivar[rows].astype(float)
            good = np.isfinite(f) & np.isfinite(iv) & (iv > 0)
            iv = np.where(good, iv, 0.0)
            f = np.where(good, f, 0.0)
            norm = self._norm(f, good, z[rows])
            log_norm[rows] = np.log10(norm)
            bins = np.floor((log_wave[None, :] - np.log1p(z[rows])[:, None] - self.log_wave_start_)
                            / self.log_step).astype(np.int64)
            inside = good & (bins >= 0) & (bins < n_bins)
            flat = (np.arange(len(f))[:, None] * n_bins + bins)[inside]
            size = len(f) * n_bins
            sum_w = np.bincount(flat, iv[inside], minlength=size).reshape(len(f), n_bins)
            sum_wf = np.bincount(flat, (iv * f)[inside], minlength=size).reshape(len(f), n_bins)
            ok = np.isfinite(norm)[:, None] & (sum_w > 0)
            safe_norm = np.where(np.isfinite(norm), norm, 1.0)[:, None]
            x[rows] = np.where(ok, sum_wf / np.where(ok, sum_w, 1.0) / safe_norm, 0.0)
            if self.weighting == "ivar" and ivar is not None:
                w[rows] = np.where(ok, sum_w * safe_norm**2, 0.0)
            else:
                w[rows] = ok.astype(float)
        return x, w, log_norm

    def _norm(self, f: np.ndarray, good: np.ndarray, z: np.ndarray) -> np.ndarray:
        rest = DESI_WAVE[None, :] / (1.0 + z[:, None])
        window = good & (rest >= self.norm_window[0]) & (rest <= self.norm_window[1])
        columns = np.flatnonzero(window.any(axis=0))
        norm = np.full(len(f), np.nan)
        if len(columns):
            cols = slice(columns[0], columns[-1] + 1)
            enough = window[:, cols].sum(axis=1) >= self.min_window_pixels
            with np.errstate(all="ignore"):
                median = np.nanmedian(np.where(window[:, cols], f[:, cols], np.nan)[enough], axis=1)
            norm[enough] = np.where(median > 0, median, np.nan)
        return norm

    # -- encoding and decoding -----------------------------------------------------------------
    def encode(self, flux: np.ndarray, ivar: np.ndarray | None, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latents (n, k) by weighted least squares on the components, and log10 norm (n,); NaN rows
        where the spectrum does not cover the normalisation window."""
        x, w, log_norm = self.to_rest(flux, ivar, z)
        latents = self.project(x, w)
        latents[~np.isfinite(log_norm)] = np.nan
        return latents, log_norm

    @one_thread()
    def project(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Weighted least-squares latents of normalised rest-frame spectra `x` with weights `w`."""
        mean = np.where(np.isfinite(self.mean_), self.mean_, 0.0)
        w = np.where(np.isfinite(self.mean_), w, 0.0)
        return _solve_latents(x - mean, w, self.components_, self.latent_ridge_)

    @one_thread()
    def rest_model(self, latents: np.ndarray) -> np.ndarray:
        """Normalised rest-frame spectra (n, n_bins) on `wave_rest_` for latents (n, k)."""
        latents = self._check_latents(latents)
        return self.mean_[None, :] + latents @ self.components_

    def _check_latents(self, latents: np.ndarray) -> np.ndarray:
        latents = np.asarray(latents, float)
        latents = latents[None, :] if latents.ndim == 1 else latents
        if latents.ndim != 2 or latents.shape[1] != self.n_components:
            raise GalaxypropError(f"latents must be (n, {self.n_components}), got shape {latents.shape}")
        return latents

    @one_thread()
    def decode(self, latents: np.ndarray, z: np.ndarray, log_norm: np.ndarray,
               dtype: type = np.float32) -> np.ndarray:
        """Flux (n, 7781) on DESI_WAVE in the input units; NaN outside the rest grid (and for NaN inputs)."""
        latents = self._check_latents(latents)
        z = np.broadcast_to(np.asarray(z, float), (len(latents),))
        log_norm = np.broadcast_to(np.asarray(log_norm, float), (len(latents),))
        out = np.empty((len(latents), N_SPECTRUM_PIXELS), dtype)
        n_bins = len(self.wave_rest_)
        log_wave = np.log(DESI_WAVE)
        for start in range(0, len(latents), CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            model = self.rest_model(latents[rows])
            position = (log_wave[None, :] - np.log1p(z[rows])[:, None] - self.log_wave_start_) / self.log_step - 0.5
            inside = (position >= 0) & (position <= n_bins - 1)
            left = np.clip(np.floor(position).astype(np.int64), 0, n_bins - 2)
            t = position - left
            lower = np.take_along_axis(model, left, axis=1)
            upper = np.take_along_axis(model, left + 1, axis=1)
            flux = ((1.0 - t) * lower + t * upper) * 10.0 ** log_norm[rows][:, None]
            out[rows] = np.where(inside, flux, np.nan)
        return out

    def reconstruct(self, flux: np.ndarray, ivar: np.ndarray | None, z: np.ndarray) -> np.ndarray:
        """decode(encode(spectra)) on the DESI grid."""
        latents, log_norm = self.encode(flux, ivar, z)
        return self.decode(latents, z, log_norm)

    # -- how well it reconstructs --------------------------------------------------------------
    @one_thread()
    def variance_left(self, flux: np.ndarray, ivar: np.ndarray | None, z: np.ndarray, *,
                      reference_flux: np.ndarray | None = None, weighted: bool = True) -> float:
        """Fraction of the per-bin variance about the training mean that the reconstruction leaves, in
        the rest frame: sum w (x_ref - x_hat)^2 / sum w (x_ref - mean)^2 over covered bins.

        `x_hat` is encoded from (`flux`, `ivar`); `x_ref` is `reference_flux` (e.g. the noiseless truth,
        normalised like `flux`) or `flux` itself; `weighted=False` weighs every covered bin alike.
        """
        x, w, log_norm = self.to_rest(flux, ivar, z)
        latents = self.project(x, w)
        x_ref = x
        if reference_flux is not None:     # the reference on the same bins, scaled by the same norm
            x_ref, _, ref_log_norm = self.to_rest(reference_flux, ivar, z)
            x_ref = x_ref * 10.0 ** (ref_log_norm - log_norm)[:, None]
        use = np.isfinite(log_norm)[:, None] & (w > 0) & np.isfinite(self.mean_)[None, :]
        weights = np.where(use, w if weighted else 1.0, 0.0)
        mean = np.where(np.isfinite(self.mean_), self.mean_, 0.0)
        model = mean + latents @ self.components_
        residual = np.where(use, x_ref - model, 0.0)
        total = np.where(use, x_ref - mean, 0.0)
        return float((weights * residual**2).sum() / (weights * total**2).sum())

    def encode_decode_error(self, flux: np.ndarray, ivar: np.ndarray | None, z: np.ndarray,
                            reference_flux: np.ndarray | None = None) -> np.ndarray:
        """Per-spectrum relative L2 error ||reconstruction - reference|| / ||reference|| on the observed
        pixels the model covers (reference: `reference_flux`, default `flux`)."""
        reference = np.asarray(flux if reference_flux is None else reference_flux, float)
        model = self.reconstruct(flux, ivar, z)
        use = np.isfinite(model) & np.isfinite(reference)
        residual = np.where(use, model - reference, 0.0)
        return np.sqrt((residual**2).sum(axis=1) / np.where(use, reference**2, 0.0).sum(axis=1))

    @property
    def n_latent(self) -> int:
        return self.n_components


class MeanTemplate(SpectralLatent):
    """The fixed-template baseline: the (weighted) mean rest-frame spectrum scaled by each galaxy's norm."""

    def __init__(self, **options):
        options.pop("n_components", None)
        super().__init__(0, **options)


# -- the weighted PCA ---------------------------------------------------------------------------
def _weighted_pca(x: np.ndarray, w: np.ndarray, k: int, n_iter: int, tol: float, ridge: float,
                  seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Mean (p,), orthonormal components (k, p) ordered by latent variance, latents (n, k) of the
    rank-k weighted least-squares fit of x (n, p) with weights w (n, p), and the latents' ridge.

    The ridges are `ridge` times a typical diagonal of the normal equations: for the latents, one
    spectrum's weight per bin (the components are orthonormal); for a bin's components, the
    summed weight of all spectra there, so bins that few spectra cover shrink to the mean.
    """
    n, p = x.shape
    total_w = w.sum(axis=0)
    covered = total_w > 0
    mean = np.where(covered, (w * x).sum(axis=0) / np.where(covered, total_w, 1.0), np.nan)
    latent_ridge = ridge * float(np.median(total_w[covered])) / n
    if k == 0:
        return mean, np.zeros((0, p)), np.zeros((n, 0)), latent_ridge
    from sklearn.utils.extmath import randomized_svd

    filled = np.where(w > 0, x - np.nan_to_num(mean), 0.0)
    _, _, components = randomized_svd(filled, k, random_state=seed)
    wx = w * x
    pixel_ridge = ridge * float(np.median(total_w[covered]))
    mean0 = np.nan_to_num(mean)
    latents = _solve_latents(x - mean0, w, components, latent_ridge)
    previous = np.inf
    for _ in range(max(1, n_iter)):
        # Bins: mean and components jointly, given the latents (ridge on the components only).
        design = np.column_stack([np.ones(n), latents])
        normal = (w.T @ _outer(design)).reshape(p, k + 1, k + 1)
        normal[:, 1:, 1:] += pixel_ridge * np.eye(k)
        normal[~covered] = np.eye(k + 1)
        rhs = wx.T @ design
        solution = np.linalg.solve(normal, rhs[..., None])[..., 0]
        mean0, components = solution[:, 0], solution[:, 1:].T
        q, r = np.linalg.qr(components.T)                          # keep the basis orthonormal
        components, latents = q.T, latents @ r.T
        latents = _solve_latents(x - mean0, w, components, latent_ridge)
        chi2 = float((w * (x - mean0 - latents @ components) ** 2).sum())
        if previous - chi2 <= tol * chi2:
            break
        previous = chi2
    # Rotate to principal axes: centred latents, components ordered by latent variance.
    centre = latents.mean(axis=0)
    mean0 = mean0 + centre @ components
    latents = latents - centre
    variance, axes = np.linalg.eigh(latents.T @ latents / n)
    order = np.argsort(variance)[::-1]
    axes = axes[:, order]
    components, latents = axes.T @ components, latents @ axes
    sign = np.sign(components[np.arange(k), np.abs(components).argmax(axis=1)])
    components, latents = components * sign[:, None], latents * sign[None, :]
    return np.where(covered, mean0, np.nan), np.where(covered[None, :], components, 0.0), latents, latent_ridge


def _outer(a: np.ndarray) -> np.ndarray:
    """Row-wise outer products a_i a_i^T flattened, (n, m*m)."""
    return (a[:, :, None] * a[:, None, :]).reshape(len(a), -1)


def _solve_latents(residual: np.ndarray, w: np.ndarray, components: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_c sum_j w_j (r_j - c . phi_j)^2 + ridge |c|^2 for every row, (n, k)."""
    k = len(components)
    if k == 0:
        return np.zeros((len(residual), 0))
    normal = (w @ _outer(components.T)).reshape(len(w), k, k) + ridge * np.eye(k)
    rhs = (w * residual) @ components.T
    return np.linalg.solve(normal, rhs[..., None])[..., 0]


def _check_spectra(flux: np.ndarray, ivar: np.ndarray | None, z: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    flux = np.asarray(flux)
    if flux.ndim == 3 and flux.shape[-1] == 1:
        flux = flux[..., 0]
    if flux.ndim != 2 or flux.shape[1] != N_SPECTRUM_PIXELS:
        raise GalaxypropError(f"spectra must be (n, {N_SPECTRUM_PIXELS}) on the DESI grid, got shape {flux.shape}")
    if ivar is not None:
        ivar = np.asarray(ivar).reshape(flux.shape)
    z = np.asarray(z, float).ravel()
    if len(z) != len(flux):
        raise GalaxypropError(f"{len(flux)} spectra but {len(z)} redshifts")
    if not np.isfinite(z).all() or (z <= -1).any():
        raise GalaxypropError("redshifts must be finite and > -1")
    return flux, ivar, z
