"""The registry round trip and the promotion gate, on a real MLflow store in a temporary directory."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from galaxyprop.errors import GalaxypropError
from galaxyprop.evaluation.densities import Grid
from galaxyprop.evaluation.metrics import target_metrics
from galaxyprop.features.photometry import PhotometryFeatures
from galaxyprop.heads import make_head
from galaxyprop.registry import versions as registry
from galaxyprop.registry.predictor import QUANTILE_COLUMNS, Predictor
from galaxyprop.registry.promotion import CalibrationRule, Gate
from galaxyprop.tracking import runs as tracking

GRID = Grid(0, 0.8, 400)


def knn_predictor(train, shuffle: bool = False, calibrate: bool = True, k: int = 16) -> Predictor:
    """A KNN z model on the first 900 training galaxies, calibrated on the other 300."""
    encoder = PhotometryFeatures()
    fit, val = train.iloc[:900], train.iloc[900:]
    y = fit["z"].to_numpy()
    if shuffle:  # a model that learned nothing
        y = np.random.default_rng(0).permutation(y)
    predictor = Predictor("z", encoder, make_head("knn", k=k).fit(encoder.transform(fit), y), GRID)
    predictor.record_support(encoder.transform(fit), y)
    if calibrate:
        predictor.calibrate(encoder.transform(val), val["z"].to_numpy())
    return predictor


def register(store, train, test, shuffle: bool = False, predictor: Predictor | None = None) -> str:
    predictor = predictor or knn_predictor(train, shuffle)
    with tracking.stage_run(store, "register"):
        return registry.register_predictor(predictor, test.head(5), {"head": "knn", "git_commit": "abc"},
                                           {"mse": 0.1})


def mse_on(test):
    """The promotion evaluation: overall and per survey field (here two halves of the test rows)."""
    from galaxyprop.registry.promotion import served_evaluation

    fields = np.where(np.arange(len(test)) < len(test) // 2, "north", "south")

    def evaluate(uri: str) -> dict[str, dict[str, float]]:
        model = mlflow.pyfunc.load_model(uri)
        return served_evaluation(model.predict(test), test["z"].to_numpy(), fields, model.unwrap_python_model().predictor.grid,
                                 "z", "mse", 0.05, 0.05)
    return evaluate


GATE = Gate("mse", field_tolerance=0.1, drift_limit=0.01)


@pytest.mark.slow
def test_register_load_and_gate(store, galaxies):
    train, test = galaxies
    good = register(store, train, test, shuffle=False)
    client = MlflowClient()
    # nothing promoted yet: the user is told how to promote, or to take the candidate
    with pytest.raises(GalaxypropError, match=rf"has no version or alias 'production': nothing has been promoted "
                                              rf"yet; `galaxyprop promote z-catalogue` gates its candidate \(v{good}\) "
                                              rf"into production, or `--model candidate`"):
        registry.resolve_version("z-catalogue", "production")
    version = client.get_model_version("galaxyprop-z-catalogue", good)
    assert version.tags["head"] == "knn" and version.tags["test_mse"] == "0.1"
    # ... and as the version's logged-model metric (MLflow 3), a number the UI compares across versions
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert {m.key: m.value for m in logged.metrics} == {"test_mse": 0.1}
    assert str(client.get_model_version_by_alias("galaxyprop-z-catalogue", "candidate").version) == good

    assert version.tags["calibrated"] == "true" and version.tags["calibration"] == "global map"
    loaded = mlflow.pyfunc.load_model("models:/galaxyprop-z-catalogue@candidate")
    assert loaded.metadata.get_input_schema().required_input_names() == [f"flux_{b}" for b in "ugriz"]
    assert loaded.metadata.get_input_schema().optional_input_names() == ["PHOTSYS"]
    assert [p.name for p in loaded.metadata.get_params_schema().params] == ["photsys"]
    predicted = loaded.predict(test)
    assert list(predicted.columns) == ["prediction", "spread", "q02", "q16", "q50", "q84", "q98", "in_support",
                                       "support_distance", "density"]
    assert set(loaded.metadata.metadata["output_columns"]) == set(predicted.columns)   # each one described
    support = loaded.metadata.metadata["training_support"]
    assert support["n_train"] == 900 and support["target_range"][1] <= 0.8 and predicted["in_support"].mean() > 0.9
    assert loaded.metadata.metadata["density_grid"] == {"low": 0.0, "high": 0.8, "n_bins": 400}
    assert target_metrics("z", test["z"], predicted["prediction"], 0.05)["sigma_mad"] < 0.03
    # the pyfunc serves exactly what the calibrated predictor gives in process
    in_process = knn_predictor(train).predict(test)
    np.testing.assert_allclose(predicted[QUANTILE_COLUMNS], in_process[QUANTILE_COLUMNS], rtol=1e-12)
    np.testing.assert_allclose(np.stack(predicted["density"]), np.stack(in_process["density"]), rtol=1e-6)
    # the quantiles are the calibrated density's: ordered, and [q16, q84] covers 68 % of the held-out truths
    assert (np.diff(predicted[QUANTILE_COLUMNS].to_numpy(), axis=1) >= 0).all()
    truth = test["z"].to_numpy()
    inside = ((truth >= predicted["q16"]) & (truth <= predicted["q84"])).mean()
    assert abs(inside - 0.683) < 0.08     # 300 galaxies: 2.9 binomial standard errors
    assert np.allclose([np.sum(d) * 0.002 for d in predicted["density"]], 1.0, atol=1e-5)

    first = registry.promote("z-catalogue", None, mse_on(test), GATE)
    assert first.promoted and "first promotion" in first.message
    assert set(client.get_model_version("galaxyprop-z-catalogue", good).tags) >= {"eval_north_mse", "eval_all_mse",
                                                                         "eval_north_coverage_68"}

    bad = register(store, train, test, shuffle=True)
    with pytest.raises(registry.PromotionRefused, match=r"worse overall \(mse [0-9.e-]+ vs production [0-9.e-]+\)"):
        registry.promote("z-catalogue", None, mse_on(test), GATE)
    assert str(client.get_model_version_by_alias("galaxyprop-z-catalogue", "production").version) == good

    forced = registry.promote("z-catalogue", bad, mse_on(test), GATE, force=True, reason="testing the override")
    assert forced.promoted
    assert client.get_model_version("galaxyprop-z-catalogue", bad).tags["force_reason"] == "testing the override"

    better = register(store, train, test, shuffle=False)
    # drift on the north field: its mse must meet the limit outright; a limit it misses refuses
    with pytest.raises(registry.PromotionRefused, match=r"drift detected on 'north': mse there = [0-9.e-]+ misses"):
        registry.promote("z-catalogue", better, mse_on(test), Gate("mse", 0.1, drift_limit=1e-6), drifted=["north"])
    accepted = registry.promote("z-catalogue", better, mse_on(test), GATE, drifted=["north"])
    production = client.get_model_version_by_alias("galaxyprop-z-catalogue", "production")
    assert accepted.promoted and str(production.version) == better
    assert client.get_model_version("galaxyprop-z-catalogue", better).tags["previous_production"] == bad
    assert client.get_model_version("galaxyprop-z-catalogue", better).tags["drift_verdict"] == "drift on ['north']"

    # rollback walks back the promotions in force: better -> bad -> good, then nothing is left
    assert registry.rollback("z-catalogue", "bad release").version == bad
    assert registry.rollback("z-catalogue", "also bad").version == good
    with pytest.raises(GalaxypropError, match="first production version; nothing to roll back to"):
        registry.rollback("z-catalogue", "again")
    moves = registry.history("z-catalogue")
    assert [(m.action, m.version, m.previous) for m in moves] == [
        ("promote", good, None), ("force", bad, good), ("promote", better, bad),
        ("rollback", bad, better), ("rollback", good, bad)]
    assert moves[1].why.startswith("forced: testing the override") and moves[3].why.endswith("bad release")
    assert all(m.by and m.at for m in moves)
    # the same history, readable on the model's page in MLflow's UI: its description, newest first
    table = client.get_registered_model("galaxyprop-z-catalogue").description.splitlines()
    assert table[2:4] == ["| when (UTC) | action | version | previous | by | why |", "|---|---|---|---|---|---|"]
    assert [row.split(" | ")[1:4] for row in table[4:]] == [[m.action, f"v{m.version}", f"v{m.previous}" if m.previous
                                                              else "-"] for m in reversed(moves)]
    assert table[4].endswith(f"| {moves[-1].why} |")
    assert [str(v.version) for v in registry.versions("z-catalogue")] == [better, bad, good]


def test_registry_errors(store):
    with pytest.raises(GalaxypropError, match="unknown model .redshift.; choose a target of params targets .kcorr_r01, z"):
        registry.parse_model("redshift", ["z", "kcorr_r01"])
    with pytest.raises(GalaxypropError, match="has no version or alias 'candidate'"):
        registry.resolve_version("z-catalogue")
    with pytest.raises(GalaxypropError, match="--force needs --reason"):
        registry.promote("z-catalogue", None, lambda uri: {"all": 0.0}, GATE, force=True)


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

    from galaxyprop.encoder.embedding import ImageEmbedder
    from galaxyprop.encoder.networks import ImageEncoder

    torch.manual_seed(0)
    embedder = ImageEmbedder(ImageEncoder((4, 8), embedding_dim=6), torch.ones(3), crop=16)
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (40, 3, 20, 20)).astype(np.float32)
    y = rng.uniform(0.05, 0.3, 40)
    predictor = Predictor("z", embedder, make_head("knn", k=4).fit(embedder.transform(images), y), GRID)
    with tracking.stage_run(store, "register"):
        version = registry.register_predictor(predictor, images[:5], {"head": "knn", "features": "image"}, {})
    model = mlflow.pyfunc.load_model(f"models:/galaxyprop-z-images/{version}")
    assert model.metadata.get_input_schema().is_tensor_spec()
    np.testing.assert_allclose(model.predict(images[5:9])["prediction"], predictor.predict(images[5:9])["prediction"])
    # the survey field is a parameter of the whole batch; an unknown one is the caller's error
    np.testing.assert_allclose(model.predict(images[5:9], params={"photsys": "S"})["q16"],
                               predictor.predict(images[5:9], "S")["q16"])
    with pytest.raises(MlflowException, match="unknown survey field 'west'"):
        model.predict(images[5:9], params={"photsys": "west"})


@pytest.mark.slow
def test_the_gate_refuses_a_miscalibrated_candidate_with_the_numbers(store, galaxies, monkeypatch, capsys):
    """An uncalibrated 2-neighbour KNN's served intervals: fine on the point metric, refused on its
    coverage; calibrated, the same head passes."""
    train, test = galaxies
    version = register(store, train, test, predictor=knn_predictor(train, calibrate=False, k=2))
    assert MlflowClient().get_model_version("galaxyprop-z-catalogue", version).tags["calibrated"] == "false"
    evaluation = mse_on(test)(f"models:/galaxyprop-z-catalogue/{version}")
    assert evaluation["all"]["coverage_68"] < 0.5      # 2 neighbours' histogram: far too narrow
    strict = Gate("mse", calibration=CalibrationRule(coverage_tolerance=0.05, ks_noise_factor=2.0))
    # 295 test galaxies: the 5-point tolerance widens to 2.5 binomial standard errors, 0.0677
    with pytest.raises(registry.PromotionRefused, match=r"68 % interval covers 0\.[0-9]+ on test 'all', outside "
                                                        r"0\.683 \+- 0\.0677; PIT KS 0\.[0-9]+ on test 'all' is not"):
        registry.promote("z-catalogue", version, mse_on(test), strict)
    assert registry.alias_version("z-catalogue", "production") is None
    calibrated = register(store, train, test, predictor=knn_predictor(train, k=2))
    assert registry.promote("z-catalogue", calibrated, mse_on(test), strict).promoted
    # `galaxyprop models` says which version is served uncalibrated
    import argparse

    from galaxyprop.cli import registry as registry_cli

    from conftest import PROJECT

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
    registry_cli.models(argparse.Namespace(params=PROJECT / "params.yaml", target="z-catalogue"))
    listing = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[3:]}
    assert " NO " in listing[version] and " yes " in listing[calibrated]


def test_selection_skips_a_miscalibrated_winner():
    """mlp has the best validation CRPS but intervals 3x too narrow: clap is the candidate; with too
    few validation rows to calibrate, knn is chosen only when nothing else passes."""
    from galaxyprop.registry.promotion import select_candidate

    val = {"mlp": {"crps": 0.010}, "clap": {"crps": 0.012}, "knn": {"crps": 0.011}, "gbt": {"sigma_mad": 0.03}}
    good = {"all": {"n": 1300, "coverage_68": 0.69, "pit_ks": 0.02}, "N": {"n": 500, "coverage_68": 0.66, "pit_ks": 0.04}}
    calibration = {"mlp": {"all": {"n": 1300, "coverage_68": 0.26, "pit_ks": 0.33}}, "clap": good, "knn": good}
    rule = CalibrationRule()
    head, skipped = select_candidate(["mlp", "clap", "knn", "gbt", "cnn"], val, calibration,
                                     {"knn": "150 validation rows"}, "crps", rule)
    assert head == "clap"
    assert skipped["mlp"].startswith("68 % interval covers 0.260 on validation 'all', outside 0.683 +- 0.05")
    assert skipped["knn"] == "served uncalibrated: 150 validation rows"
    assert skipped["gbt"].startswith("no validation crps") and "not trained" in skipped["cnn"]
    head, _ = select_candidate(["mlp", "knn"], val, calibration, {"knn": "150 validation rows"}, "crps", rule)
    assert head == "knn"
    head, skipped = select_candidate(["mlp"], val, calibration, {}, "crps", rule)
    assert head is None and "PIT KS 0.3300" in skipped["mlp"]


def test_the_gate_reads_drift_per_field_and_allows_field_noise():
    from galaxyprop.registry.promotion import drifted_fields, problems

    summary = {"south_vs_north": {"detected": True}, "south_train_vs_south_test": {"detected": True},
               "south_vs_batch": {"detected": False}}
    assert drifted_fields(summary) == ["north"]          # a control within the reference field is not a field
    with pytest.raises(GalaxypropError, match="'southnorth' is not named <reference>_vs_<current>"):
        drifted_fields({"southnorth": {"detected": True}})
    gate = Gate("sigma_mad", field_tolerance=0.1, drift_limit=0.03)

    def values(**fields):
        return {f: {"sigma_mad": v} for f, v in fields.items()}

    production = values(all=0.020, north=0.025, south=0.018)
    assert problems(gate, values(all=0.019, north=0.0270, south=0.017), production) == []   # +8 % on north
    found = problems(gate, values(all=0.019, north=0.0280, south=0.017), production)       # +12 %
    assert found == ["worse on 'north' by more than 10% (sigma_mad 0.028 vs production 0.025)"]
    assert problems(gate, values(all=0.019, north=0.035), None, drifted=["north"]) == [
        "drift detected on 'north': sigma_mad there = 0.035 misses the limit 0.03"]
    assert problems(gate, values(all=0.019, south=0.02), None, drifted=["north"]) == [
        "drift detected on 'north' but the test data has no galaxies from it to evaluate on"]
    assert problems(Gate("r2"), {"all": {"r2": 0.9}, "north": {"r2": float("nan")}}, {"all": {"r2": 0.95}}) == [
        "no finite r2 on ['north']", "worse overall (r2 0.9 vs production 0.95)"]
    # the calibration rule per field: north's intervals cover too little
    calibrated = Gate("sigma_mad", calibration=CalibrationRule())
    served = {"all": {"sigma_mad": 0.02, "n": 1300, "coverage_68": 0.67, "pit_ks": 0.02},
              "north": {"sigma_mad": 0.03, "n": 500, "coverage_68": 0.60, "pit_ks": 0.09}}
    assert problems(calibrated, served, None) == ["68 % interval covers 0.600 on test 'north', outside 0.683 +- 0.052"]


def test_find_version_matches_every_tag_and_set_candidate_repoints(store, tmp_path):
    """What makes a re-run of the register stage idempotent: the version an identical earlier run
    registered (same model bytes, code, data, params) is found and `candidate` re-pointed to it."""
    client = MlflowClient()
    client.create_registered_model("galaxyprop-z-catalogue")
    (tmp_path / "model").mkdir()
    first, second = (str(client.create_model_version("galaxyprop-z-catalogue", (tmp_path / "model").as_uri()).version)
                     for _ in range(2))
    model = tmp_path / "predictor.joblib"
    model.write_bytes(b"weights")
    lineage = {"model_hash": registry.file_hash(model), "code_hash": registry.package_hash(), "data_hash": "d1"}
    for version, data_hash in ((first, "d1"), (second, "d2")):
        for key, value in {**lineage, "data_hash": data_hash}.items():
            client.set_model_version_tag("galaxyprop-z-catalogue", version, key, value)
    client.set_registered_model_alias("galaxyprop-z-catalogue", "candidate", second)
    assert str(registry.find_version("z-catalogue", lineage).version) == first
    assert str(registry.find_version("z-catalogue", {**lineage, "data_hash": "d2"}).version) == second
    model.write_bytes(b"other weights")
    assert registry.find_version("z-catalogue", {**lineage, "model_hash": registry.file_hash(model)}) is None
    assert registry.package_hash() == lineage["code_hash"] and len(lineage["model_hash"]) == 64
    registry.set_candidate("z-catalogue", first)
    assert str(registry.resolve_version("z-catalogue").version) == first
    with pytest.raises(GalaxypropError, match="at least one tag"):
        registry.find_version("z-catalogue", {})


def test_summary_marks_a_candidate_whose_test_intervals_fail_the_promotion_gate(params, tmp_path, monkeypatch):
    """`galaxyprop summary` applies the gate's calibration rule to the pipeline's test figures: a field
    whose 68 % interval covers 0.591 of 362 galaxies (outside 0.683 +- 2.5 binomial errors, 0.061) is named
    with its number; a candidate inside the rule on every field is not marked."""
    import json

    from galaxyprop.cli.summary import lines

    def field(coverage, n):
        return {"coverage_68": coverage, "coverage_95": 0.95, "pit_ks": 0.03, "n": n, "crps": 0.01}

    fine = {"all": field(0.676, 930), "N": field(0.680, 362), "S": field(0.674, 568)}
    off = {"all": field(0.646, 930), "N": field(0.591, 362), "S": field(0.681, 568)}
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "metrics.json").write_text(json.dumps({"zzsun": {
        "gbt@measured": {"mse": 0.0016, "coverage_68": 0.646, "coverage_95": 0.957},
        "clap@photometry": {"mse": 0.0017, "coverage_68": 0.70, "coverage_95": 0.959}}}))
    (reports / "registered.json").write_text(json.dumps({
        "zzsun-images": {"model": "galaxyprop-zzsun-images", "version": 1, "target": "zzsun", "head": "gbt@measured",
                         "inputs": "images"},
        "zzsun-catalogue": {"model": "galaxyprop-zzsun-catalogue", "version": 1, "target": "zzsun",
                            "head": "clap@photometry", "inputs": "catalogue"}}))
    (reports / "metrics_breakdown.json").write_text(json.dumps({"calibration_by_field": {"zzsun": {
        "gbt@measured": {"test": {"calibrated": off}}, "clap@photometry": {"test": {"calibrated": fine}}}}}))
    monkeypatch.chdir(tmp_path)
    text = lines(params)
    marks = [line for line in text if "fails its promotion gate" in line]
    assert len(marks) == 1 and "galaxyprop-zzsun-images" in marks[0]
    assert "covers 0.591 on test 'N', outside 0.683 +- 0.0612" in marks[0]


@pytest.mark.slow
def test_a_production_alias_moved_outside_the_gate_is_reported(store, galaxies, capsys):
    """MLflow's own alias buttons bypass the gate: `models`, `check`, `predict` and `serve` then say in
    one line that no recorded gate decision put production where it is; a promotion through galaxyprop
    (forced, with its reason) is a recorded decision again."""
    from galaxyprop.cli.main import _warn_if_bypassed

    train, test = galaxies
    client = MlflowClient()
    first = register(store, train, test)
    assert registry.unrecorded_production("z-catalogue") is None               # no production at all
    client.set_registered_model_alias("galaxyprop-z-catalogue", "production", first)      # the UI's button
    capsys.readouterr()
    message = registry.unrecorded_production("z-catalogue")
    assert f"production is v{first}" in message and "history ends at no promotion" in message
    _warn_if_bypassed("z-catalogue", "production")
    assert capsys.readouterr().err.splitlines() == [f"galaxyprop: warning: {message}"]
    _warn_if_bypassed("z-catalogue", "candidate")                               # not production: nothing to say
    assert capsys.readouterr().err == ""
    registry.promote("z-catalogue", first, mse_on(test), GATE, force=True, reason="recorded after the UI move")
    assert registry.unrecorded_production("z-catalogue") is None
    second = register(store, train, test, shuffle=True)
    client.set_registered_model_alias("galaxyprop-z-catalogue", "production", second)
    assert f"history ends at v{first}" in registry.unrecorded_production("z-catalogue")
