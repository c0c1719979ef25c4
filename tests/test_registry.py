"""The registry round trip and the promotion gate, on a real MLflow store in a temporary directory."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from conftest import gst_path, mlflow_store, sdss_data
from mlflow.tracking import MlflowClient

from galaxyprop import registry, tracking
from galaxyprop.config import Stores
from galaxyprop.data.catalog import CatalogSpec, read_catalog
from galaxyprop.errors import GalaxypropError
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.heads import make_head
from galaxyprop.metrics import target_metrics
from galaxyprop.predictor import Predictor


@pytest.fixture
def store(tmp_path):
    stores = Stores(f"sqlite:///{tmp_path}/mlflow.db", (tmp_path / "artifacts").as_uri(),
                    f"sqlite:///{tmp_path}/optuna.db", "galaxyprop-test")
    with mlflow_store(stores.tracking_uri):
        tracking.connect(stores)
        yield stores


@pytest.fixture(scope="module")
def galaxies(params):
    frame, _ = read_catalog(gst_path(), CatalogSpec.from_params(sdss_data(params)), max_rows=1500, seed=0)
    return frame.iloc[:1200], frame.iloc[1200:]


def register(store, train, test, shuffle: bool) -> str:
    encoder = PhotometryFeatures()
    y = train["z"].to_numpy()
    if shuffle:  # a model that learned nothing
        y = np.random.default_rng(0).permutation(y)
    predictor = Predictor("z", encoder, make_head("knn", k=16).fit(encoder.transform(train), y))
    with tracking.stage_run(store, "register"):
        return registry.register_predictor(predictor, test.head(5), {"head": "knn", "git_commit": "abc"},
                                           {"mse": 0.1})


def mse_on(test):
    def score(uri: str) -> float:
        predicted = mlflow.pyfunc.load_model(uri).predict(test)["prediction"]
        return target_metrics("z", test["z"], predicted, 0.05)["mse"]
    return score


def test_register_load_and_gate(store, galaxies):
    train, test = galaxies
    good = register(store, train, test, shuffle=False)
    client = MlflowClient()
    version = client.get_model_version("galaxyprop-z", good)
    assert version.tags["head"] == "knn" and version.tags["test_mse"] == "0.1"
    assert str(client.get_model_version_by_alias("galaxyprop-z", "candidate").version) == good

    loaded = mlflow.pyfunc.load_model("models:/galaxyprop-z@candidate")
    assert loaded.metadata.get_input_schema().input_names() == [f"flux_{b}" for b in "ugriz"]
    predicted = loaded.predict(test)["prediction"].to_numpy()
    assert target_metrics("z", test["z"], predicted, 0.05)["sigma_mad"] < 0.03

    first = registry.promote("z", None, mse_on(test), "mse")
    assert first.promoted and "first promotion" in first.message

    bad = register(store, train, test, shuffle=True)
    with pytest.raises(registry.PromotionRefused, match=r"candidate v2 = [0-9.e-]+, production v1 = [0-9.e-]+"):
        registry.promote("z", None, mse_on(test), "mse")
    assert str(client.get_model_version_by_alias("galaxyprop-z", "production").version) == good

    forced = registry.promote("z", bad, mse_on(test), "mse", force=True, reason="testing the override")
    assert forced.promoted
    assert client.get_model_version("galaxyprop-z", bad).tags["force_reason"] == "testing the override"

    better = register(store, train, test, shuffle=False)
    accepted = registry.promote("z", better, mse_on(test), "mse")
    assert accepted.promoted and str(client.get_model_version_by_alias("galaxyprop-z", "production").version) == better
    assert client.get_model_version("galaxyprop-z", better).tags["previous_production"] == bad


def test_registry_errors(store):
    with pytest.raises(GalaxypropError, match="unknown target 'redshift'"):
        registry.model_name("redshift")
    with pytest.raises(GalaxypropError, match="has no version or alias 'candidate'"):
        registry.resolve_version("z")
    with pytest.raises(GalaxypropError, match="--force needs --reason"):
        registry.promote("z", None, lambda uri: 0.0, "mse", force=True)


def test_metrics_of_heads_on_other_features_are_logged(store):
    """`knn@photometry` is the contract's key; MLflow forbids `@` in metric names, so it logs `knn:photometry`."""
    with tracking.stage_run(store, "evaluate") as run:
        tracking.log_metrics({"z": {"knn@photometry": {"r2": 0.5, "mse": float("nan")}}}, prefix="test.")
        mlflow.log_params(tracking.flatten({"responses": {"*": {"r": "sdss_r0"}}}))
    logged = MlflowClient().get_run(run.info.run_id).data
    assert logged.metrics == {"test.z.knn:photometry.r2": 0.5}
    assert logged.params == {"responses._.r": "sdss_r0"}


def test_an_image_model_registers_with_a_tensor_signature(store):
    """A version trained on image embeddings takes (N, 3, H, W) cutouts, declared in its signature."""
    import torch

    from galaxyprop.features.embedding import ImageEmbedder
    from galaxyprop.features.networks import ImageEncoder

    torch.manual_seed(0)
    embedder = ImageEmbedder(ImageEncoder((4, 8), embedding_dim=6), torch.ones(3), crop=16)
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (40, 3, 20, 20)).astype(np.float32)
    y = rng.uniform(0.05, 0.3, 40)
    predictor = Predictor("z", embedder, make_head("knn", k=4).fit(embedder.transform(images), y))
    with tracking.stage_run(store, "register"):
        version = registry.register_predictor(predictor, images[:5], {"head": "knn", "features": "image"}, {})
    model = mlflow.pyfunc.load_model(f"models:/galaxyprop-z/{version}")
    assert model.metadata.get_input_schema().is_tensor_spec()
    np.testing.assert_allclose(model.predict(images[5:9])["prediction"], predictor.predict(images[5:9])["prediction"])
