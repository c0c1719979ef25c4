"""A served answer outside the model's training support is flagged: synthetic clouds with known
geometry, and real SDSS galaxies beyond the redshifts a model was trained on."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from galaxyprop.data.catalog import CatalogSpec, read_catalog
from galaxyprop.evaluation.densities import Grid
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.features.support import fit_support
from galaxyprop.heads import make_head
from galaxyprop.registry.predictor import Predictor

from conftest import gst_path, sdss_data


def test_half_a_percent_of_galaxies_like_the_training_set_fall_outside_and_shifted_ones_all_do():
    rng = np.random.default_rng(0)
    train, held_out = rng.normal(size=(3000, 5)), rng.normal(size=(4000, 5))
    support = fit_support(train, rng.normal(size=3000))
    outside = support.distance(held_out) > 1
    assert 0.002 < outside.mean() < 0.03     # 0.5 % beyond the neighbours, ~1 % beyond the 0.1-99.9 % ranges
    shifted = held_out[:200].copy()
    shifted[:, 2] += 8.0                     # eight sigma in one feature
    assert (support.distance(shifted) > 1).all()
    assert np.isinf(support.distance(np.full((1, 5), np.nan))).all()
    # the search built by the first call is reused, and left out of the pickle the registry stores
    restored = pickle.loads(pickle.dumps(support))
    assert support._search is not None and restored._search is None
    np.testing.assert_array_equal(restored.distance(held_out), support.distance(held_out))


def test_a_combination_the_training_set_never_had_is_outside_though_each_feature_is_in_range():
    rng = np.random.default_rng(1)
    x = rng.normal(size=2000)
    train = np.column_stack([x, x + 0.05 * rng.normal(size=2000)])   # a tight colour-like relation
    support = fit_support(train, x)
    assert support.distance(np.array([[1.0, 1.0]]))[0] < 1            # on the relation
    assert support.distance(np.array([[1.0, -1.0]]))[0] > 3           # each value common, the pair unseen


def test_image_tensors_record_no_support_and_say_so():
    assert fit_support(np.zeros((100, 3, 8, 8)), np.zeros(100)) is None


@pytest.fixture(scope="module")
def sdss(params):
    frame, _ = read_catalog(gst_path(), CatalogSpec.from_params(sdss_data(params)), seed=0)
    return frame


def test_a_z_model_trained_below_z_0_1_flags_sdss_galaxies_above_0_2(sdss):
    """The issue's case on real galaxies: the model has never seen the colours of z > 0.2 galaxies,
    so its answers for them are flagged; held-out galaxies of its own range mostly are not. A model
    saved before supports were recorded serves without the columns."""
    low, high = sdss[sdss["z"] < 0.1], sdss[sdss["z"] > 0.2]
    assert len(low) > 2000 and len(high) > 100
    train, held_out = low.iloc[:2000], low.iloc[2000:]
    encoder = PhotometryFeatures()
    predictor = Predictor("z", encoder, make_head("knn", k=16).fit(encoder.transform(train), train["z"].to_numpy()),
                          Grid(0, 0.6, 300))
    predictor.record_support(encoder.transform(train), train["z"].to_numpy())
    assert predictor.support.target_range[1] < 0.1
    near, far = predictor.predict(held_out), predictor.predict(high)
    assert near["in_support"].mean() > 0.95
    assert far["in_support"].mean() < 0.25
    assert (far["support_distance"] > 1).equals(~far["in_support"])
    assert (far["q98"] < high["z"].to_numpy()).mean() > 0.9    # what the flag warns of: the truth beyond q98
    state = predictor.__dict__.copy()
    for key in ("support", "support_report"):
        state.pop(key)
    old = Predictor.__new__(Predictor)
    old.__setstate__(state)
    assert "in_support" not in old.predict(held_out.head(3)).columns
    assert "saved before" in old.support_report


def test_predict_says_how_many_galaxies_fell_outside_or_that_the_model_cannot_tell(tmp_path):
    from types import SimpleNamespace

    import pandas as pd

    from galaxyprop.cli.main import _support_line

    flagged = tmp_path / "flagged.parquet"
    pd.DataFrame({"prediction": [0.1, 0.5, 0.6], "in_support": [True, False, False]}).to_parquet(flagged)
    model = SimpleNamespace(metadata=SimpleNamespace(metadata={}))
    assert _support_line(str(flagged), model).startswith("2 of 3 galaxies lie outside the model's training support")
    unflagged = tmp_path / "unflagged.parquet"
    pd.DataFrame({"prediction": [0.1]}).to_parquet(unflagged)
    images = SimpleNamespace(metadata=SimpleNamespace(metadata={"training_support": "not recorded: image tensors"}))
    assert _support_line(str(unflagged), images) == ("training support: not recorded: image tensors; "
                                                     "the answers are not flagged")
