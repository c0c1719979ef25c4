"""MLflow models-from-code entry point of galaxyprop-spectrum (see registry.spectrum)."""

import mlflow.models

from galaxyprop.registry.spectrum import SpectrumModel

mlflow.models.set_model(SpectrumModel())
