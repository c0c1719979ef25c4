"""`galaxyprop-spectrum`: the registered model that returns a galaxy's spectrum from its cutouts.

In: g,r,z cutouts (N, 3, H, W) in nanomaggies per pixel, as the `-images` models take them. Out, one row
per cutout: the predicted redshift `z` and spectrum normalisation `log_norm`, the spectral `latent`,
`flux` on the DESI grid (3600-9824 A in 0.8 A steps, 7781 pixels; 1e-17 erg/s/cm^2/A) and
`flux_spread`, its per-pixel standard deviation over draws of the latent from the head's spread. The
draws are seeded, so the same cutouts give the same spectra.

Promotion (`galaxyprop promote spectrum`) uses the registry's gate with `latent_mse_relative` on the
test split, overall and per survey field, in place of a target's metric and calibration rule.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from galaxyprop.calibration import field_groups
from galaxyprop.errors import GalaxypropError
from galaxyprop.registry.versions import SPECTRUM_MODEL as SPECTRUM  # the model id: galaxyprop-spectrum

METRIC = "latent_mse_relative"
PREDICTOR_ARTIFACT = "spectrum_predictor"
#: The served table's columns and what each is (the model's metadata and a prediction file's schema say it).
OUTPUT_COLUMNS = {
    "z": "the redshift the spectrum is placed at (the image's photo-z from the latent)",
    "log_norm": "log10 of the spectrum's normalisation",
    "latent": "the spectral latent (the PCA coefficients the head predicts)",
    "flux": "the predicted spectrum on the DESI grid (metadata `wavelength`), in 1e-17 erg/s/cm^2/Angstrom",
    "flux_spread": "its per-pixel spread over the head's latent samples, same unit",
}


def spectra_frame(predicted: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The served table: scalar columns and one array per row for the latent, flux and spread."""
    return pd.DataFrame({"z": predicted["z"].astype(float), "log_norm": predicted["log_norm"].astype(float),
                         "latent": list(predicted["latents"].astype(np.float32)),
                         "flux": list(predicted["flux"].astype(np.float32)),
                         "flux_spread": list(predicted["flux_std"].astype(np.float32))})


def served_spectra(predictor, cutouts: np.ndarray) -> dict[str, np.ndarray]:
    """What the model serves for these cutouts: the predictor's spectra with its registered number of
    draws and a fixed seed (the same cutouts give the same spectra)."""
    return predictor.predict_spectra(cutouts, n_samples=getattr(predictor, "n_samples", 16), seed=0)


class SpectrumModel(mlflow.pyfunc.PythonModel):
    """The pyfunc of a `spectra.model.SpectrumPredictor` (see the module docstring)."""

    def load_context(self, context) -> None:
        from galaxyprop.data.io import load_object

        self.predictor = load_object(context.artifacts[PREDICTOR_ARTIFACT], object)

    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        try:
            cutouts = np.asarray(model_input)
            if len(cutouts) == 0:
                raise GalaxypropError("the input has no rows")
            return spectra_frame(served_spectra(self.predictor, cutouts))
        except GalaxypropError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None


def register_spectrum(predictor, cutouts: np.ndarray, tags: Mapping[str, str], metrics: Mapping[str, float],
                      n_samples: int = 16) -> str:
    """Log the predictor as `galaxyprop-spectrum`'s pyfunc in the active run, alias it `candidate`, tag it
    with `tags` and the test `metrics`; the version."""
    from mlflow import MlflowClient

    import galaxyprop
    from galaxyprop.data.astroclip import DESI_WAVE
    from galaxyprop.data.io import save_object
    from galaxyprop.registry import versions

    example = np.ascontiguousarray(cutouts, dtype=np.float32)
    predictor.n_samples = int(n_samples)    # the served draws per galaxy for the per-pixel spread
    signature = infer_signature(example, spectra_frame(served_spectra(predictor, example)))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "predictor.joblib"
        save_object(predictor, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(Path(__file__).with_name("spectrum_entry.py")),
                artifacts={PREDICTOR_ARTIFACT: str(path)}, signature=signature, input_example=example,
                pip_requirements=versions.pip_requirements(),
                metadata={"output_columns": OUTPUT_COLUMNS, "features": tags.get("features", ""),
                          "n_samples": int(n_samples),
                          "wavelength": {"start": float(DESI_WAVE[0]), "step": float(DESI_WAVE[1] - DESI_WAVE[0]),
                                         "n": int(len(DESI_WAVE)), "unit": "Angstrom (vacuum)"},
                          "flux_unit": "1e-17 erg/s/cm^2/Angstrom",
                          "inputs": "g,r,z cutouts (N, 3, H, W) in nanomaggies per pixel"},
                code_paths=[str(Path(galaxyprop.__file__).parent)],
                registered_model_name=versions.model_name(SPECTRUM))
    version = str(info.registered_model_version)
    client = MlflowClient()
    name = versions.model_name(SPECTRUM)
    for key, value in {**tags, **{f"test_{k}": f"{v:.6g}" for k, v in metrics.items()}}.items():
        client.set_model_version_tag(name, version, key, str(value))
    client.set_registered_model_alias(name, versions.CANDIDATE, version)
    return version


def latent_evaluation(served: pd.DataFrame, latent_truth: np.ndarray, train_latents: np.ndarray,
                      fields: np.ndarray | None) -> dict[str, dict[str, float]]:
    """What the gate reads: `latent_mse_relative` of the served latents overall and on each field."""
    from galaxyprop.spectra.metrics import latent_mse_relative

    predicted = np.stack(served["latent"].to_numpy())
    return {field: {METRIC: float(latent_mse_relative(latent_truth[rows], predicted[rows], train_latents)),
                    "n": int(np.sum(rows))}
            for field, rows in field_groups(fields, len(latent_truth)).items()}
