"""The spectral latent on synthetic DESI spectra built from the kcorrect templates: it reconstructs
held-out spectra far better than the mean template, decodes onto the DESI grid in the input units,
and the SpectrumPredictor's per-pixel spread follows the head's."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from galaxyprop.data.astroclip import DESI_WAVE, N_SPECTRUM_PIXELS
from galaxyprop.errors import GalaxypropError
from galaxyprop.spectra.heads import SpectrumHead, spectrum_targets
from galaxyprop.spectra.latent import MeanTemplate, SpectralLatent
from galaxyprop.spectra.metrics import reduced_chi2
from galaxyprop.spectra.model import SpectrumPredictor
from spectra_synthetic import fit_and_save, synthetic_spectra

N_TRAIN, N_TEST = 800, 200


@pytest.fixture(scope="module")
def spectra():
    return synthetic_spectra(N_TRAIN + N_TEST)


@pytest.fixture(scope="module")
def fitted(spectra):
    flux, ivar, _, z = spectra
    train = slice(0, N_TRAIN)
    return (SpectralLatent(6).fit(flux[train], ivar[train], z[train]),
            MeanTemplate().fit(flux[train], ivar[train], z[train]))


@pytest.mark.slow
def test_latent_reconstructs_held_out_spectra_far_better_than_the_mean_template(spectra, fitted):
    flux, ivar, truth, z = spectra
    latent, mean_template = fitted
    test = slice(N_TRAIN, None)
    chi2 = {}
    for name, model in (("latent", latent), ("mean", mean_template)):
        reconstruction = model.reconstruct(flux[test], ivar[test], z[test])
        chi2[name] = np.median(reduced_chi2(truth[test], ivar[test], reconstruction, n_latent=model.n_latent))
    assert chi2["latent"] < 0.1 * chi2["mean"]
    assert chi2["latent"] < 1.0          # closer to the truth than the noise is
    left = latent.variance_left(flux[test], ivar[test], z[test], reference_flux=truth[test])
    assert left < 0.02 and mean_template.variance_left(flux[test], ivar[test], z[test],
                                                       reference_flux=truth[test]) == pytest.approx(1.0, abs=0.05)


def test_six_components_explain_the_noiseless_variance(spectra):
    _, ivar, truth, z = spectra
    latent = SpectralLatent(6).fit(truth[:N_TRAIN], ivar[:N_TRAIN], z[:N_TRAIN])
    assert 1.0 - latent.fraction_left_ > 0.9
    assert latent.explained_variance_ratio_.sum() > 0.9
    assert np.all(np.diff(latent.explained_variance_) <= 0)      # ordered by latent variance
    held_out = latent.variance_left(truth[N_TRAIN:], ivar[N_TRAIN:], z[N_TRAIN:])
    assert held_out < 0.05
    np.testing.assert_allclose(latent.components_ @ latent.components_.T, np.eye(6), atol=1e-8)


def test_decode_is_on_the_desi_grid_in_the_input_units(spectra, fitted):
    flux, ivar, truth, z = spectra
    latent, _ = fitted
    test = slice(N_TRAIN, N_TRAIN + 50)
    latents, log_norm = latent.encode(truth[test], ivar[test], z[test])
    assert latents.shape == (50, 6) and log_norm.shape == (50,)
    decoded = latent.decode(latents, z[test], log_norm)
    assert decoded.shape == (50, N_SPECTRUM_PIXELS)
    # NaN only outside the rest grid: observed pixels whose rest wavelength the grid does not hold
    rest = DESI_WAVE[None, :] / (1 + z[test, None])
    inside = (rest >= latent.wave_rest_[0]) & (rest <= latent.wave_rest_[-1])
    assert np.isfinite(decoded[inside]).all() and np.isnan(decoded[~inside]).all()
    reference = truth[test]
    relative = np.abs(decoded - reference) / np.median(reference, axis=1, keepdims=True)
    assert np.nanmedian(relative) < 0.01
    l2 = np.sqrt(np.nansum((decoded - reference) ** 2, axis=1) / np.sum(np.where(inside, reference, 0) ** 2, axis=1))
    assert np.median(l2) < 0.05
    # the norm is in the input units: 10^log_norm is the median flux in the rest window
    window = (rest >= 5300) & (rest <= 5800)
    expected = [np.median(f[w]) for f, w in zip(reference, window)]
    np.testing.assert_allclose(10.0 ** log_norm, expected, rtol=1e-5)


def test_latent_pickles_masks_bad_pixels_and_checks_inputs(spectra, fitted):
    flux, ivar, _, z = spectra
    latent, _ = fitted
    rows = slice(N_TRAIN, N_TRAIN + 5)
    again = pickle.loads(pickle.dumps(latent))
    np.testing.assert_array_equal(again.encode(flux[rows], ivar[rows], z[rows])[0],
                                  latent.encode(flux[rows], ivar[rows], z[rows])[0])
    # masked pixels (ivar 0, NaN flux) do not move the latents much; no ivar at all works too
    holed_flux, holed_ivar = flux[rows].copy(), ivar[rows].copy()
    holed_flux[:, 3000:3400] = np.nan
    holed_ivar[:, 5000:5200] = 0.0
    full, _ = latent.encode(flux[rows], ivar[rows], z[rows])
    holed, _ = latent.encode(holed_flux, holed_ivar, z[rows])
    assert np.isfinite(holed).all()
    # (600 of 7781 pixels gone moves the leading latent by at most ~0.4 of its spread over galaxies)
    assert np.abs(holed - full).max() < 0.4 * np.sqrt(latent.explained_variance_[0])
    assert np.isfinite(latent.encode(flux[rows], None, z[rows])[0]).all()
    # a redshift beyond the normalisation window's reach encodes to NaN, not to nonsense
    latents, log_norm = latent.encode(flux[rows], ivar[rows], np.full(5, 2.0))
    assert np.isnan(log_norm).all() and np.isnan(latents).all()
    with pytest.raises(GalaxypropError, match="DESI grid"):
        latent.encode(flux[rows, :100], ivar[rows, :100], z[rows])
    with pytest.raises(GalaxypropError, match="latents must be"):
        latent.decode(np.zeros((2, 3)), [0.1, 0.1], [0.0, 0.0])


# -- byte-reproducible, whatever the thread count (issue 32, item 8) ---------------------------------
def test_latent_bytes_do_not_depend_on_the_thread_count(tmp_path):
    """With 2 BLAS threads the (n, p) @ (p, k^2) products of the fit sum in another order than with 1, and
    the iterations carried the last digit into every stored number: the fit now runs on one thread."""
    from threadpoolctl import threadpool_info, threadpool_limits

    fitted = {}
    for threads in (1, 2):
        with threadpool_limits(threads):
            fitted[threads] = fit_and_save(tmp_path / f"latent_{threads}.joblib")
    one, two = fitted[1], fitted[2]
    assert (tmp_path / "latent_1.joblib").read_bytes() == (tmp_path / "latent_2.joblib").read_bytes()
    for name in ("mean_", "components_", "train_latents_", "explained_variance_", "explained_variance_ratio_"):
        assert np.array_equal(getattr(one, name), getattr(two, name), equal_nan=True), name
    # encoding and decoding too: the heads' targets and the decoded spectra
    flux, ivar, _, z = synthetic_spectra(20, seed=4)
    with threadpool_limits(1):
        latents_1, log_norm = one.encode(flux, ivar, z)
        decoded_1 = one.decode(latents_1, z, log_norm)
    with threadpool_limits(2):
        latents_2, _ = one.encode(flux, ivar, z)
        decoded_2 = one.decode(latents_2, z, log_norm)
    assert np.array_equal(latents_1, latents_2) and np.array_equal(decoded_1, decoded_2, equal_nan=True)
    # the caller's thread counts are back afterwards
    with threadpool_limits(2):
        before = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}
        one.encode(flux, ivar, z)
        after = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}
        assert {path: after[path] for path in before} == before


@pytest.mark.slow   # fresh processes, a server or a simulation: left out of `make test-fast`
def test_latent_bytes_are_the_same_in_fresh_processes(tmp_path):
    """Two fresh interpreters (other hash seeds, 1 and 2 threads from the environment) write the same file."""
    script = Path(__file__).with_name("spectra_synthetic.py")
    for run, threads in ((1, "1"), (2, "2")):
        env = {**os.environ, "PYTHONHASHSEED": str(run), "OMP_NUM_THREADS": threads,
               "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        subprocess.run([sys.executable, str(script), str(tmp_path / f"run_{run}.joblib")], env=env, check=True,
                       timeout=300)
    fit_and_save(tmp_path / "here.joblib")
    here = (tmp_path / "here.joblib").read_bytes()
    assert (tmp_path / "run_1.joblib").read_bytes() == (tmp_path / "run_2.joblib").read_bytes() == here


class GaussianHead(SpectrumHead):
    """A stand-in head: given means, a given spread, Gaussian draws."""

    name = "gaussian"

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean, self.std = mean, std

    def fit(self, X_train, Y_train, X_val=None, Y_val=None):
        return self

    def predict(self, X):
        return self.mean[X[:, 0].astype(int)], self.std[X[:, 0].astype(int)]

    def sample(self, X, n, rng):
        mean, std = self.predict(X)
        return mean + std * rng.standard_normal((n, *mean.shape))


def test_predictor_spread_is_positive_and_shrinks_with_the_heads_spread(spectra, fitted):
    flux, ivar, _, z = spectra
    latent, _ = fitted
    rows = slice(N_TRAIN, N_TRAIN + 8)
    latents, log_norm = latent.encode(flux[rows], ivar[rows], z[rows])
    targets = spectrum_targets(latents, z[rows], log_norm)
    scale = np.concatenate([np.sqrt(latent.explained_variance_), [0.0, 0.05]])
    X = np.arange(8, dtype=float)[:, None]
    spreads = {}
    for factor in (1.0, 0.25):
        predictor = SpectrumPredictor(None, GaussianHead(targets, np.tile(factor * scale, (8, 1))), latent)
        out = predictor.predict_spectra(X, n_samples=64, seed=1)
        assert out["flux"].shape == out["flux_std"].shape == (8, N_SPECTRUM_PIXELS)
        np.testing.assert_allclose(out["flux"], latent.decode(latents, z[rows], log_norm), rtol=1e-6)
        covered = np.isfinite(out["flux"])
        assert (out["flux_std"][covered] >= 0).all() and np.isnan(out["flux_std"][~covered]).all()
        spreads[factor] = out["flux_std"][covered]
    ratio = np.median(spreads[0.25] / spreads[1.0])
    assert 0.15 < ratio < 0.35
    # n_samples = 0: the point spectrum alone; a given redshift replaces the predicted one
    fixed = SpectrumPredictor(None, GaussianHead(targets, np.tile(scale, (8, 1))), latent).predict_spectra(
        X, n_samples=0, z=np.full(8, 0.1))
    assert (fixed["flux_std"] == 0).all() and (fixed["z"] == 0.1).all()


def test_gallery_figure_and_pick(spectra, fitted):
    from galaxyprop.spectra.gallery import gallery_figure, pick_gallery

    flux, ivar, _, z = spectra
    latent, _ = fitted
    colour = np.linspace(0.2, 1.0, len(z))
    picked = pick_gallery(z, colour, 6)
    assert len(picked) == 6 and np.all(np.diff(z[picked]) >= 0)
    assert len(set(colour[picked] > np.median(colour))) == 2          # both types
    rows = picked[:3]
    reconstruction = latent.reconstruct(flux[rows], ivar[rows], z[rows])
    cutouts = np.random.default_rng(0).random((3, 16, 16, 3))
    fig = gallery_figure(cutouts, DESI_WAVE, flux[rows], ivar[rows], reconstruction,
                         0.1 * np.abs(reconstruction), z[rows], ["a", "b", "c"])
    assert len(fig.axes) == 6
