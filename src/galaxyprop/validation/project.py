"""Every section's schema together: what `check_params` (the first stage) and every CLI command check
params.yaml against. A stage checks only the schemas of the sections it reads (each package declares
its own), so that loading params never imports every capability."""

from __future__ import annotations

from collections.abc import Mapping

from galaxyprop.calibration.params import CALIBRATION_SCHEMA
from galaxyprop.data.params import DATA_SCHEMA, SPLIT_SCHEMA
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.encoder.params import ENCODER_SCHEMA
from galaxyprop.evaluation.params import EVALUATION_SCHEMA
from galaxyprop.features.params import FEATURES_SCHEMA
from galaxyprop.heads.params import ADAPTATION_SCHEMA, BASELINES_SCHEMA, HEADS_SCHEMA, TRAIN_SCHEMA
from galaxyprop.mock.config import MOCK_SCHEMA
from galaxyprop.monitoring.params import DRIFT_SCHEMA
from galaxyprop.registry.params import REGISTRY_SCHEMA
from galaxyprop.resources import RESOURCES_SCHEMA
from galaxyprop.spectra.params import SPECTRA_SCHEMA
from galaxyprop.tracking.params import STORES_SCHEMA
from galaxyprop.tracking.tuning import TUNING_SCHEMA
from galaxyprop.validation.rules import validate

SCHEMAS = (STORES_SCHEMA, DATA_SCHEMA, MOCK_SCHEMA, SPLIT_SCHEMA, FEATURES_SCHEMA, ENCODER_SCHEMA, TARGETS_SCHEMA,
           EVALUATION_SCHEMA, HEADS_SCHEMA, TRAIN_SCHEMA, BASELINES_SCHEMA, ADAPTATION_SCHEMA, CALIBRATION_SCHEMA,
           TUNING_SCHEMA, REGISTRY_SCHEMA, SPECTRA_SCHEMA, DRIFT_SCHEMA, RESOURCES_SCHEMA)
#: the sections these schemas check (others are accepted as they are)
VALIDATED_SECTIONS = sorted(set().union(*(schema.sections for schema in SCHEMAS)))


def validate_params(params: Mapping) -> None:
    """Raise ParamsError, one line naming the dotted key, at the first value the pipeline cannot use."""
    validate(params, SCHEMAS)
