"""galaxyprop-spectrum: a spectrum predictor from mock cutouts, registered, promoted through the gate and
served; the pyfunc and the HTTP server return the in-process model's spectra on the DESI grid."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import mock_config

N_GALAXIES = 160


@pytest.fixture(scope="module")
def predictor(tmp_path_factory, params):
    """A spectrum predictor on 120 mock galaxies: sep measurements of the cutouts -> KNN -> a 4-component latent."""
    from galaxyprop.data.astroclip import AstroclipFile
    from galaxyprop.features.measured import MeasuredFeatures
    from galaxyprop.mock.survey import simulate_survey
    from galaxyprop.spectra.evaluation import latent_targets
    from galaxyprop.spectra.heads import make_spectrum_head
    from galaxyprop.spectra.latent import SpectralLatent
    from galaxyprop.spectra.model import SpectrumPredictor

    root = tmp_path_factory.mktemp("spectrum")
    config = mock_config(params, n_galaxies=N_GALAXIES, n_jobs=1, chunk_size=80, seed=5,
                         **{"imaging.stamp_size": 32, "population.z_max": 0.37})
    simulate_survey(config, root / "astroclip.h5", root / "fastspec.fits", progress=False)
    with AstroclipFile(root / "astroclip.h5") as file:
        rows = np.arange(N_GALAXIES)
        cutouts, (flux, ivar), (_, z) = file.cutouts(rows), file.spectra(rows), file.index()
    encoder = MeasuredFeatures()
    X = encoder.transform(cutouts)
    train, test = slice(0, 120), slice(120, None)
    latent = SpectralLatent(n_components=4).fit(flux[train], ivar[train], z[train])
    Y = latent_targets(latent, flux, ivar, z)
    head = make_spectrum_head("knn", ks=(4, 8)).fit(X[train], Y[train], X[100:120], Y[100:120])
    return SpectrumPredictor(encoder, head, latent), cutouts[test], flux[test], ivar[test], z[test]


@pytest.mark.slow
def test_the_predictor_decodes_onto_the_desi_grid(predictor):
    from galaxyprop.data.astroclip import DESI_WAVE

    model, cutouts, flux, ivar, z = predictor
    out = model.predict_spectra(cutouts, n_samples=8)
    assert out["flux"].shape == out["flux_std"].shape == (len(cutouts), len(DESI_WAVE)) == flux.shape
    assert DESI_WAVE[0] == pytest.approx(3600.0) and DESI_WAVE[-1] == pytest.approx(9824.0)
    covered = np.isfinite(out["flux"])
    assert covered.mean() > 0.9 and np.all(out["flux_std"][covered] >= 0)
    # same units as the observed spectra: the predicted flux's median is the observed one's to a factor 2
    ratio = np.nanmedian(out["flux"], axis=1) / np.median(flux, axis=1)
    assert 0.5 < np.median(ratio) < 2.0


@pytest.mark.slow   # fresh processes, a server or a simulation: left out of `make test-fast`
def test_registered_pyfunc_promotion_and_http_serve_the_same_spectra(predictor, store, tmp_path):
    import mlflow

    from galaxyprop.registry import versions as registry
    from galaxyprop.registry.promotion import Gate
    from galaxyprop.registry.spectrum import METRIC, SPECTRUM, latent_evaluation, register_spectrum, served_spectra
    from galaxyprop.tracking import runs as tracking

    from registered_models import served

    model, cutouts, flux, ivar, z = predictor
    with tracking.stage_run(store, "register"):
        version = register_spectrum(model, cutouts[:3], {"features": "measured", "head": "knn"}, {METRIC: 0.5},
                                    n_samples=8)
    loaded = mlflow.pyfunc.load_model(f"models:/galaxyprop-{SPECTRUM}@candidate")
    served_frame = loaded.predict(cutouts.astype(np.float32))
    expected = served_spectra(model, cutouts.astype(np.float32))
    assert list(served_frame.columns) == ["z", "log_norm", "latent", "flux", "flux_spread"]
    np.testing.assert_array_equal(np.stack(served_frame["flux"]), expected["flux"].astype(np.float32))
    np.testing.assert_array_equal(np.stack(served_frame["flux_spread"]), expected["flux_std"].astype(np.float32))
    np.testing.assert_allclose(served_frame["z"], expected["z"])
    metadata = loaded.metadata.metadata
    assert metadata["wavelength"] == {"start": 3600.0, "step": pytest.approx(0.8), "n": 7781,
                                      "unit": "Angstrom (vacuum)"}

    # `galaxyprop predict spectrum --input <AstroCLIP file>`: the spectrum model itself, over the file's cutouts
    from argparse import Namespace

    from galaxyprop.cli.main import _model_for_inputs
    from galaxyprop.deploy.batch import predict_file

    from registered_models import write_astroclip

    assert _model_for_inputs(Namespace(target="spectrum", catalogue=None, input="any.h5"), ["z"]) == "spectrum"
    images = write_astroclip(tmp_path / "new.h5", cutouts[:4].astype(np.float32), np.arange(4) + 500)
    uri = f"models:/galaxyprop-{SPECTRUM}@candidate"
    assert predict_file(loaded, uri, images, tmp_path / "spectra.parquet", chunk_size=3, progress=False) == 4
    written = pd.read_parquet(tmp_path / "spectra.parquet")
    assert written["TARGETID"].tolist() == [500, 501, 502, 503]
    np.testing.assert_allclose(np.stack(written["flux"]), expected["flux"][:4], rtol=1e-6, equal_nan=True)
    # the gate: the served latents against the test spectra's own, overall and per field
    truth = model.latent.encode(flux, ivar, z)[0]
    fields = np.where(np.arange(len(truth)) % 2, "north", "south")
    evaluation = latent_evaluation(served_frame, truth, model.latent.train_latents_, fields)
    assert set(evaluation) == {"all", "north", "south"} and 0 < evaluation["all"][METRIC] < 1.0
    result = registry.promote(SPECTRUM, None, lambda uri: evaluation, Gate(METRIC, 0.1, 0.6, None))
    assert result.promoted and str(registry.alias_version(SPECTRUM, registry.PRODUCTION).version) == version

    # a POST of cutouts to the scoring server returns the same spectra; a bad shape is a 400
    with served(store.tracking_uri, f"models:/galaxyprop-{SPECTRUM}@production") as post:
        status, body = post(json.dumps({"inputs": cutouts[:2].astype(np.float32).tolist()}).encode())
        assert status == 200, body[:500]
        rows = json.loads(body)["predictions"]
        np.testing.assert_allclose([r["flux"] for r in rows], expected["flux"][:2], rtol=1e-6, equal_nan=True)
        status, body = post(json.dumps({"inputs": cutouts[:2, :, :5].tolist()}).encode())
        assert status == 400, body[:500]
