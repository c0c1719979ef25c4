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
from galaxyprop.densities import Grid
from galaxyprop.predictor import Predictor
from galaxyprop.promotion import Gate


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
    predictor = Predictor("z", encoder, make_head("knn", k=16).fit(encoder.transform(train), y), Grid(0, 0.8, 400))
    with tracking.stage_run(store, "register"):
        return registry.register_predictor(predictor, test.head(5), {"head": "knn", "git_commit": "abc"},
                                           {"mse": 0.1})


def mse_on(test):
    """The promotion evaluation: overall and per survey field (here two halves of the test rows)."""
    fields = {"all": slice(None), "north": slice(0, len(test) // 2), "south": slice(len(test) // 2, None)}

    def evaluate(uri: str) -> dict[str, float]:
        predicted = mlflow.pyfunc.load_model(uri).predict(test)["prediction"].to_numpy()
        return {f: target_metrics("z", test["z"].to_numpy()[rows], predicted[rows], 0.05)["mse"]
                for f, rows in fields.items()}
    return evaluate


GATE = Gate("mse", field_tolerance=0.1, drift_limit=0.01)


def test_register_load_and_gate(store, galaxies):
    train, test = galaxies
    good = register(store, train, test, shuffle=False)
    client = MlflowClient()
    version = client.get_model_version("galaxyprop-z", good)
    assert version.tags["head"] == "knn" and version.tags["test_mse"] == "0.1"
    assert str(client.get_model_version_by_alias("galaxyprop-z", "candidate").version) == good

    loaded = mlflow.pyfunc.load_model("models:/galaxyprop-z@candidate")
    assert loaded.metadata.get_input_schema().input_names() == [f"flux_{b}" for b in "ugriz"]
    predicted = loaded.predict(test)
    assert list(predicted.columns) == ["prediction", "spread", "q16", "q50", "q84", "density"]
    assert target_metrics("z", test["z"], predicted["prediction"], 0.05)["sigma_mad"] < 0.03
    # the quantiles are the density's: ordered, the median inside the central 68 % of the truths' spread
    assert (predicted["q16"] <= predicted["q50"]).all() and (predicted["q50"] <= predicted["q84"]).all()
    truth = test["z"].to_numpy()
    inside = ((truth >= predicted["q16"]) & (truth <= predicted["q84"])).mean()
    assert 0.5 < inside < 0.9
    assert np.allclose([np.sum(d) * 0.002 for d in predicted["density"]], 1.0, atol=1e-5)

    first = registry.promote("z", None, mse_on(test), GATE)
    assert first.promoted and "first promotion" in first.message
    assert set(client.get_model_version("galaxyprop-z", good).tags) >= {"eval_north_mse", "eval_all_mse"}

    bad = register(store, train, test, shuffle=True)
    with pytest.raises(registry.PromotionRefused, match=r"worse overall \(mse [0-9.e-]+ vs production [0-9.e-]+\)"):
        registry.promote("z", None, mse_on(test), GATE)
    assert str(client.get_model_version_by_alias("galaxyprop-z", "production").version) == good

    forced = registry.promote("z", bad, mse_on(test), GATE, force=True, reason="testing the override")
    assert forced.promoted
    assert client.get_model_version("galaxyprop-z", bad).tags["force_reason"] == "testing the override"

    better = register(store, train, test, shuffle=False)
    # drift on the north field: its mse must meet the limit outright; a limit it misses refuses
    with pytest.raises(registry.PromotionRefused, match=r"drift detected on 'north': mse there = [0-9.e-]+ misses"):
        registry.promote("z", better, mse_on(test), Gate("mse", 0.1, drift_limit=1e-6), drifted=["north"])
    accepted = registry.promote("z", better, mse_on(test), GATE, drifted=["north"])
    assert accepted.promoted and str(client.get_model_version_by_alias("galaxyprop-z", "production").version) == better
    assert client.get_model_version("galaxyprop-z", better).tags["previous_production"] == bad
    assert client.get_model_version("galaxyprop-z", better).tags["drift_verdict"] == "drift on ['north']"

    # rollback walks back the promotions in force: better -> bad -> good, then nothing is left
    assert registry.rollback("z", "bad release").version == bad
    assert registry.rollback("z", "also bad").version == good
    with pytest.raises(GalaxypropError, match="first production version; nothing to roll back to"):
        registry.rollback("z", "again")
    moves = registry.history("z")
    assert [(m.action, m.version, m.previous) for m in moves] == [
        ("promote", good, None), ("force", bad, good), ("promote", better, bad),
        ("rollback", bad, better), ("rollback", good, bad)]
    assert moves[1].why.startswith("forced: testing the override") and moves[3].why.endswith("bad release")
    assert all(m.by and m.at for m in moves)
    assert [str(v.version) for v in registry.versions("z")] == [better, bad, good]


def test_registry_errors(store):
    with pytest.raises(GalaxypropError, match="unknown target 'redshift'"):
        registry.model_name("redshift")
    with pytest.raises(GalaxypropError, match="has no version or alias 'candidate'"):
        registry.resolve_version("z")
    with pytest.raises(GalaxypropError, match="--force needs --reason"):
        registry.promote("z", None, lambda uri: {"all": 0.0}, GATE, force=True)


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


def test_the_gate_reads_drift_per_field_and_allows_field_noise():
    from galaxyprop.promotion import drifted_fields, problems

    summary = {"south_vs_north": {"detected": True}, "south_train_vs_south_test": {"detected": True},
               "south_vs_batch": {"detected": False}}
    assert drifted_fields(summary) == ["north"]          # a control within the reference field is not a field
    with pytest.raises(GalaxypropError, match="'southnorth' is not named <reference>_vs_<current>"):
        drifted_fields({"southnorth": {"detected": True}})
    gate = Gate("sigma_mad", field_tolerance=0.1, drift_limit=0.03)
    production = {"all": 0.020, "north": 0.025, "south": 0.018}
    assert problems(gate, {"all": 0.019, "north": 0.0270, "south": 0.017}, production) == []   # +8 % on north
    found = problems(gate, {"all": 0.019, "north": 0.0280, "south": 0.017}, production)       # +12 %
    assert found == ["worse on 'north' by more than 10% (sigma_mad 0.028 vs production 0.025)"]
    assert problems(gate, {"all": 0.019, "north": 0.035}, None, drifted=["north"]) == [
        "drift detected on 'north': sigma_mad there = 0.035 misses the limit 0.03"]
    assert problems(gate, {"all": 0.019, "south": 0.02}, None, drifted=["north"]) == [
        "drift detected on 'north' but the test data has no galaxies from it to evaluate on"]
    assert problems(Gate("r2"), {"all": 0.9, "north": float("nan")}, {"all": 0.95}) == [
        "no finite r2 on ['north']", "worse overall (r2 0.9 vs production 0.95)"]
