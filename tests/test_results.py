"""A result's name (`<head>@<features>`) parsed in one place, and the contract's metrics key."""

from __future__ import annotations

from galaxyprop.results import MULTIMODAL_INPUTS, ResultName, inputs_of, metrics_key, result_name, result_of
from galaxyprop.workspace import model_dir, predictions_path


def test_names_keys_and_inputs_of_every_kind_of_result():
    knn = ResultName.parse("knn@measured+photometry")
    assert (knn.head, knn.features, str(knn)) == ("knn", "measured+photometry", "knn@measured+photometry")
    assert result_name("gbt", "image") == "gbt@image" == str(ResultName("gbt", "image"))
    # the default features are keyed by the head alone, and the key maps back
    assert metrics_key("knn@image", "image") == "knn" and metrics_key("knn@photometry", "image") == "knn@photometry"
    assert result_of("knn", "image") == "knn@image" and result_of("knn@photometry", "image") == "knn@photometry"
    assert result_of("cnn", "image") == "cnn" and metrics_key("cnn", "image") == "cnn"
    # what each learned from
    assert inputs_of("knn", "image") == "image" and inputs_of("gbt@measured", "image") == "measured"
    assert inputs_of("cnn", "image") == "cutouts" and inputs_of("cnn_mm", "image") == MULTIMODAL_INPUTS
    assert inputs_of("kcorrect_specz", "image") == "spec-z"
    assert inputs_of("kcorrect_photoz", "image") == "photo-z:image"
    assert inputs_of("kcorrect_photoz@photometry", "image") == "photo-z:photometry"
    # where each is written: a feature head's results in its stage's folder, the others by target
    assert model_dir("z", "gbt@measured").as_posix() == "models/z/gbt/gbt@measured"
    assert model_dir("z", "cnn").as_posix() == "models/z/cnn"
    assert predictions_path("kcorr_r01", "kcorrect_photoz@photometry").as_posix() == \
        "data/predictions/kcorr_r01/kcorrect_photoz/kcorrect_photoz@photometry.parquet"
