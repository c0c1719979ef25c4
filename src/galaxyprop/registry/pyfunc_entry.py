"""MLflow models-from-code entry point: the registry logs this file instead of a pickled object."""

import mlflow.models

from galaxyprop.registry.serving import PredictorModel

mlflow.models.set_model(PredictorModel())
