"""The real `dvc repro` on a tiny profile in a temporary copy of the project, then the registry loop,
all against the team store: an MLflow tracking server (`galaxyprop server`) on a real PostgreSQL, the
Optuna studies in the same PostgreSQL; the last test reruns a train stage with two tuning workers on
it. (The sqlite stores of the default run are what tests/test_catalogue_pipeline.py's pipeline runs
against.) The repro itself tunes with one worker: parallel workers draw their trials in whatever
order they finish, so the tiny models, and the gates their test galaxies pass, would change from run
to run."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from galaxyprop.workspace import DENSITIES, SKIPPED, densities_path, model_dir, predictions_path, result_files

from conftest import desi_targets, mlflow_store, mock_config
from project_copy import NEW_TARGET, TINY_TARGETS, copy_project, edit_params, params_texts, run, tiny_profile

pytestmark = pytest.mark.integration
CONTRACT = {"r2", "mae", "mse", "rmse", "sigma_nmad", "outlier_rate"}
PHOTO_Z = {"sigma_mad", "eta", "bias", "bias_median"}
DENSITY = {"pit_ks", "pit_cvm", "pit_w1", "pit_outlier_rate", "crps", "coverage_68", "coverage_95",
           "pit_ks_raw", "coverage_68_raw", "coverage_95_raw", "crps_raw"}
#: The default results: every feature head on the catalogue and on the catalogue with the sep measurements,
#: knn and gbt on the embeddings (the default features: keyed by the head alone), the g,r,z catalogue and
#: the measurements alone, and the two CNNs.
DENSITY_HEADS = {"knn@photometry", "gbt@photometry", "mlp@photometry", "clap@photometry",
                 "knn@measured+photometry", "gbt@measured+photometry", "mlp@measured+photometry",
                 "clap@measured+photometry", "knn", "gbt", "knn@photometry_grz", "gbt@photometry_grz",
                 "knn@measured", "gbt@measured", "cnn", "cnn_mm"}
#: What each registered model of a target takes (reports/registered.json's keys -> `inputs`).
KINDS = {"": "multimodal", "-images": "images", "-catalogue": "catalogue"}


@pytest.fixture(scope="module")
def team_store(postgres, tmp_path_factory) -> Iterator[dict[str, str]]:
    """`galaxyprop server` on the session's PostgreSQL (its `mlflow` database), artifacts served from a
    temporary folder; the studies in its `optuna` database."""
    from postgres_server import mlflow_server

    with mlflow_server(f"{postgres}/mlflow", tmp_path_factory.mktemp("served-artifacts")) as url:
        yield {"tracking_uri": url, "optuna_storage": f"{postgres}/optuna", "database": postgres}


def team_mode(store: dict[str, str]):
    def edit(params: dict) -> None:
        params["stores"].update(tracking_uri=store["tracking_uri"], optuna_storage=store["optuna_storage"])
    return edit


def store_uri(project: Path) -> str:
    """The tracking URI the project's stages and commands use (its params' stores)."""
    return yaml.safe_load((project / "params.yaml").read_text())["stores"]["tracking_uri"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, team_store) -> Path:
    root = copy_project(tmp_path_factory.mktemp("project"))
    edit_params(root, tiny_profile)
    edit_params(root, team_mode(team_store))
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "tiny profile"], root)
    run(["dvc", "repro"], root)
    return root


def test_metrics_follow_the_contract(project):
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert set(metrics) == set(TINY_TARGETS)
    # image embeddings are the default features; the cnn learns from the cutouts
    heads = DENSITY_HEADS
    assert set(metrics["z"]) == heads
    assert set(metrics["kcorr_r01"]) == heads | {"kcorrect_specz", "kcorrect_photoz", "kcorrect_photoz@photometry"}
    # the target only the params define: every head on the sources its targets.<t>.features lists (the
    # catalogue alone and with the sep measurements, and the cnn's cutouts); cnn_mm is recorded as skipped
    assert set(metrics[NEW_TARGET]) == {h for h in heads if h.endswith("photometry")} | {"cnn"}
    skipped = json.loads((project / model_dir(NEW_TARGET, "cnn_mm") / SKIPPED).read_text())
    assert skipped == {"reason": f"targets.{NEW_TARGET}.features does not list 'cutouts+photometry'"}
    for head, values in metrics["z"].items():
        density = DENSITY | {"sigma_mad_mode", "eta_mode", "bias_mode"} if head in DENSITY_HEADS else set()
        assert set(values) == CONTRACT | PHOTO_Z | density, head
        if head in DENSITY_HEADS:   # 90 test galaxies: 3 binomial sigma of the 68 % level is 0.15
            assert 0.53 < values["coverage_68"] < 0.83 and 0.82 < values["coverage_95"] <= 1.0, head
    assert set(metrics["kcorr_r01"]["clap@photometry"]) == CONTRACT | DENSITY | {"sigma_nmad_mode", "mse_mode"}
    # Each must beat the median of the training truths (the constant predictor) by a margin a broken
    # head, feature source or label would not reach. A 3-epoch encoder, a 4-epoch MLP, a 2-epoch CNN and
    # a 1-trial CLAP on 490 galaxies are weak, so the image heads are held to less than photometry.
    median_z, median_k = constant_predictor(project)
    z, k = metrics["z"], metrics["kcorr_r01"]
    for head in ("knn@photometry", "gbt@photometry"):
        assert z[head]["sigma_mad"] < 0.75 * median_z["sigma_mad"] and z[head]["r2"] > 0.25, head
        assert k[head]["mse"] < 0.35 * median_k["mse"] and k[head]["r2"] > 0.6, head
    assert min(z[h]["sigma_mad"] for h in ("knn", "gbt", "cnn", "gbt@measured")) < 0.9 * median_z["sigma_mad"]
    for head in ("knn", "gbt", "gbt@measured"):
        assert k[head]["mse"] < 0.75 * median_k["mse"], head
    # the catalogue with the measurements is at least as good a start as the catalogue alone
    for head in ("gbt@measured+photometry", "cnn_mm"):
        assert z[head]["sigma_mad"] < 0.75 * median_z["sigma_mad"] and k[head]["mse"] < 0.35 * median_k["mse"], head
    assert max(v["crps"] for h, v in k.items() if h in DENSITY_HEADS) < median_k["crps"]
    # Same templates as the labels, but dust and SED perturbations beyond their span.
    assert 0.9 < metrics["kcorr_r01"]["kcorrect_specz"]["r2"] < 0.999
    # at a photo-z the fit is worse than at the spectroscopic redshift
    assert metrics["kcorr_r01"]["kcorrect_photoz"]["mse"] > metrics["kcorr_r01"]["kcorrect_specz"]["mse"]
    # kcorrect_photoz: at the best image-only photo-z; @photometry: at the best photometry photo-z
    photoz = json.loads((project / "reports/kcorrect_photoz@image.json").read_text())
    assert photoz["redshift"] in {"knn", "gbt", "cnn", "knn@measured", "gbt@measured"}
    assert set(photoz["failed_fits"]) == {"val", "test"}
    photometry = json.loads((project / "reports/kcorrect_photoz@photometry.json").read_text())
    assert photometry["redshift"].endswith("@photometry")
    prepare = json.loads((project / "reports/prepare.json").read_text())
    assert prepare["n_input"] == 700 and prepare["n_kept"] == sum(prepare["split_sizes"].values())
    assert (project / "reports/plots/evaluation/z_residual_vs_z.png").stat().st_size > 10_000
    assert (project / "reports/plots/data/gallery.png").stat().st_size > 50_000


def test_a_target_defined_only_in_params_is_learnt(project):
    """kcorr_g01 exists only in the tiny profile's params: the catalogue heads learn it far beyond the
    median predictor, the evaluate stage's own median row agrees with one computed here, and the
    comparison report ranks it against that median."""
    import pandas as pd

    metrics = json.loads((project / "reports/metrics.json").read_text())[NEW_TARGET]
    median = json.loads((project / "reports/metrics_breakdown.json").read_text())["median_predictor"][NEW_TARGET]
    train = pd.read_parquet(project / "data/prepared/train.parquet")
    test = pd.read_parquet(project / "data/prepared/test.parquet")
    assert median["value"] == pytest.approx(float(np.median(train[NEW_TARGET])))
    assert median["mse"] == pytest.approx(float(np.mean((test[NEW_TARGET] - median["value"]) ** 2)))
    from astropy.io import fits

    with fits.open(project / "data/raw/fastspec.fits") as hdus:    # the column the params name, unchanged
        column = dict(zip(hdus["METADATA"].data["TARGETID"], hdus["SPECPHOT"].data["KCORR01_SDSS_G"], strict=True))
    np.testing.assert_allclose(test[NEW_TARGET], [column[i] for i in test["id"]], rtol=1e-6)
    catalogue = ("knn@photometry", "gbt@photometry", "gbt@measured+photometry")
    for head in catalogue:   # a 60-tree GBT on 490 galaxies: 0.70 x the median's MSE
        assert metrics[head]["mse"] < 0.85 * median["mse"] and metrics[head]["r2"] > 0.15, head
    assert min(metrics[head]["mse"] for head in catalogue) < 0.6 * median["mse"]
    assert 0.3 < metrics["clap@photometry"]["coverage_68"] < 0.95
    # targets.<t>.features: its heads trained on those two sources alone, knn and gbt too
    assert {head.partition("@")[2] for head in metrics if "@" in head} == {"photometry", "measured+photometry"}
    assert "gbt" not in metrics and not (project / model_dir(NEW_TARGET, "gbt@measured")).exists()
    report = (project / "reports/comparison.md").read_text()
    assert f"## `{NEW_TARGET}`" in report and "vs the median predictor: mse" in report


def constant_predictor(project: Path) -> tuple[dict, dict]:
    """The metrics of predicting every test galaxy's z and K as the median of the training truths; its
    CRPS is that of a point mass (the mean absolute error)."""
    import pandas as pd

    from galaxyprop.evaluation.metrics import target_metrics

    train = pd.read_parquet(project / "data/prepared/train.parquet")
    test = pd.read_parquet(project / "data/prepared/test.parquet")
    out = []
    for target in ("z", "kcorr_r01"):
        truth = test[target].to_numpy(float)
        guess = np.full(len(truth), np.median(train[target]))
        values = target_metrics(target, truth, guess, 0.05, 0.05)
        out.append({**values, "crps": float(np.mean(np.abs(truth - guess)))})
    return out[0], out[1]


def test_breakdowns_comparison_report_and_trial_runs(project):
    breakdown = json.loads((project / "reports/metrics_breakdown.json").read_text())
    fields = breakdown["by_field"]["kcorr_r01"]["mlp@photometry"]
    assert set(fields) == {"N", "S"}
    test_size = json.loads((project / "reports/prepare.json").read_text())["split_sizes"]["test"]
    assert fields["N"]["n"] + fields["S"]["n"] == test_size
    confident = breakdown["by_confidence"]["z"]["mlp@photometry"]
    assert [row["kept"] for row in confident] == [1.0, 0.9, 0.8]
    assert confident[0]["n"] == test_size and confident[2]["n"] == round(0.8 * test_size)
    assert confident[2]["max_spread"] <= confident[0]["max_spread"]
    report = (project / "reports/comparison.md").read_text()
    assert "| `kcorrect_photoz` | baseline · photo-z:image |" in report and "| `cnn` | images · cutouts |" in report
    assert "| `cnn_mm` | multimodal · cutouts+photometry |" in report
    assert "| `gbt@photometry_grz` | catalogue on g,r,z · photometry_grz |" in report
    assert "Best image-only head" in report and "the catalogue: best multimodal" in report
    assert "vs the catalogue on the images' bands `" in report
    for target, metric in (("kcorr_r01", "mse"), ("z", "sigma_mad")):
        assert (project / f"reports/plots/comparison/{target}_{metric}_vs_z.png").stat().st_size > 10_000
        assert f"plots/comparison/{target}_{metric}_confidence.png" in report
    best = json.loads((project / model_dir("z", "mlp@photometry") / "best_params.json").read_text())
    assert best["params"]["max_epochs"] == 4 and "best_epoch" in best
    with mlflow_store(store_uri(project)):
        trials = mlflow.search_runs(search_all_experiments=True,
                                    filter_string="tags.mlflow.runName LIKE 'train:mlp@photometry:z:trial-%'")
        parents = mlflow.search_runs(search_all_experiments=True,
                                     filter_string="tags.mlflow.runName = 'train:mlp@photometry:z'")
    assert len(trials) == 2 and set(trials["tags.mlflow.parentRunId"]) <= set(parents["run_id"])
    assert set(trials["status"]) == {"FINISHED"} and trials["metrics.val_loss"].notna().all()
    assert trials["tags.optuna_worker"].str.fullmatch(r".+:\d+/0").all()     # every trial names its worker
    tuning = json.loads((project / model_dir("z", "knn@photometry") / "tuning.json").read_text())
    assert tuning["n_complete"] == 3                               # heads.knn.n_trials, not more


def test_densities_are_written_per_test_galaxy_and_scored(project):
    import pandas as pd

    from galaxyprop.data.density_file import read_densities
    from galaxyprop.evaluation.metrics import density_metrics

    test = pd.read_parquet(project / "data/prepared/test.parquet")
    written = sorted(p.name for p in result_files(project / DENSITIES, "z", ".h5"))
    assert written == sorted(f"{h}@image.h5" if h in ("knn", "gbt") else f"{h}.h5" for h in DENSITY_HEADS)
    ids, pdf, grid = read_densities(project / densities_path("z", "clap@photometry"), split="test")
    assert set(ids) == set(test["id"]) and grid.n_bins == 200 and grid.high == pytest.approx(0.4)
    np.testing.assert_allclose(pdf.sum(axis=1) * grid.width, 1.0, rtol=1e-4)
    truth = test.set_index("id").loc[ids, "z"].to_numpy()
    metrics = json.loads((project / "reports/metrics.json").read_text())["z"]
    assert density_metrics(pdf, grid, truth)["crps"] == pytest.approx(metrics["clap@photometry"]["crps"], rel=1e-4)
    # clap's prediction is its own (raw) density's mean
    _, raw, _ = read_densities(project / densities_path("z", "clap@photometry"), split="test", raw=True)
    predicted = pd.read_parquet(project / predictions_path("z", "clap@photometry")).set_index("id")
    np.testing.assert_allclose(predicted.loc[ids, "prediction"], (raw * grid.width) @ grid.centres, atol=1e-5)
    # every MC-dropout head is calibrated: its raw Gaussians (3x or more too narrow at 4 epochs) are not
    for head in ("mlp@photometry", "cnn", "cnn_mm"):
        calibration = json.loads((project / model_dir("z", head) / "calibration.json").read_text())
        assert calibration["calibrated"] and calibration["method"] != "none", head
        assert abs(metrics[head]["coverage_68"] - 0.683) < abs(metrics[head]["coverage_68_raw"] - 0.683) + 0.02
    val = json.loads((project / "reports/val_metrics.json").read_text())
    assert {"crps", "coverage_68", "pit_ks", "crps_raw"} <= set(val["z"]["knn"])
    best = json.loads((project / model_dir("z", "clap@photometry") / "best_params.json").read_text())
    assert best["params"]["n_realisations"] == 2 and "val_crps" in best and "val_sigma_mad" in best
    for target in ("z", "kcorr_r01"):
        for plot in ("pit_histograms", "pit_qq"):
            assert (project / f"reports/plots/evaluation/{target}_{plot}.png").stat().st_size > 10_000


def test_encoder_and_embedding_stages(project):
    encoder = json.loads((project / "reports/encoder.json").read_text())
    assert encoder["epochs_trained"] == 3 and encoder["test_loss"] > 0
    assert encoder["chance_top5"] == pytest.approx(5 / sum(json.loads(
        (project / "reports/prepare.json").read_text())["split_sizes"][s] for s in ["test"]))
    for name in ("image_to_spectrum_top5", "spectrum_to_image_top1"):
        assert 0 <= encoder[name] <= 1
    import pandas as pd

    for kind in ("image", "spectrum"):
        test = pd.read_parquet(project / f"data/features/{kind}/test.parquet")
        prepared = pd.read_parquet(project / "data/prepared/test.parquet")
        assert list(test["id"]) == list(prepared["id"]) and test.shape[1] == 1 + 16
        np.testing.assert_allclose(np.linalg.norm(test.drop(columns="id").to_numpy(), axis=1), 1.0, rtol=1e-5)
    assert (project / "data/features/external/skipped.json").exists()
    assert (project / "reports/plots/embeddings/image_pca.png").stat().st_size > 20_000
    assert (project / "reports/plots/encoder/loss.png").stat().st_size > 10_000


def model_inputs(model, frame, file):
    """What a registered model takes for these galaxies: their catalogue columns, cutouts, or both."""
    from galaxyprop.deploy.batch import ModelInput

    need = ModelInput.of(model)
    if need.multimodal:
        return need.tensors(file.cutouts(frame["image_row"].to_numpy()), frame)
    if need.shape:
        return file.cutouts(frame["image_row"].to_numpy())
    return frame[list(need.columns)]


def test_every_kind_of_candidate_predicts_a_new_survey_with_lineage(project, tmp_path, params):
    from galaxyprop.data.astroclip import AstroclipFile
    from galaxyprop.data.desi import read_desi
    from galaxyprop.mock.survey import simulate_survey

    config = mock_config(params, n_galaxies=300, seed=99, **{"imaging.stamp_size": 24})
    simulate_survey(config, tmp_path / "new.h5", tmp_path / "new.fits", progress=False)
    new, _ = read_desi(tmp_path / "new.h5", tmp_path / "new.fits", z_max=0.37, targets=desi_targets(params))
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    prepared = next(o["md5"] for o in lock["stages"]["prepare"]["outs"] if o["path"] == "data/prepared")
    features = {"multimodal": {"cutouts+photometry", "measured+photometry", "image+photometry"},
                "images": {"image", "measured", "cutouts"}, "catalogue": {"photometry", "photometry_grz"}}
    with mlflow_store(store_uri(project)), AstroclipFile(tmp_path / "new.h5") as file:
        for suffix, kind in KINDS.items():
            model = mlflow.pyfunc.load_model(f"models:/galaxyprop-z{suffix}@candidate")
            version = MlflowClient().get_model_version_by_alias(f"galaxyprop-z{suffix}", "candidate")
            assert version.tags["inputs"] == kind and version.tags["features"] in features[kind], version.tags
            predicted = model.predict(model_inputs(model, new, file))
            # a model on a feature matrix flags galaxies outside its training support; the CNNs record none
            support = ["in_support", "support_distance"] if version.tags["head"] not in {"cnn", "cnn_mm"} else []
            assert list(predicted.columns) == ["prediction", "spread", "q02", "q16", "q50", "q84", "q98", *support,
                                               "density"]
            if support:       # a new survey drawn like the training one: nearly every galaxy inside
                assert predicted["in_support"].mean() > 0.8, (kind, predicted["in_support"].mean())
            assert len(predicted) == len(new)
            dz = (predicted["prediction"] - new["z"].to_numpy()) / (1 + new["z"].to_numpy())
            # a 3-epoch tiny encoder only gets a loose bound
            assert 1.4826 * np.median(np.abs(dz - np.median(dz))) < 0.2, kind
            assert version.tags["git_commit"] == head
            assert version.tags["data_hash"] == prepared
            assert version.tags["dataset"] == "mock"
            assert version.tags["head"] in {"knn", "gbt", "mlp", "cnn", "clap", "cnn_mm"}
            assert {"params_hash", "features", "test_sigma_mad", "test_mse"} <= set(version.tags)


def test_the_candidates_serve_calibrated_intervals(project):
    """Each registered candidate (every target, every kind of input), loaded as a user would and fed the
    test split by field: its [q16, q84] covers 68 % of the truths within what ~100 galaxies allow (3
    binomial standard errors; a spread 3x too narrow covers about 26 %), and [q02, q98] most of them."""
    out = run(["galaxyprop", "check", "z"], project, check=False)
    assert "calibration rule: passes" in out.stdout, out.stdout + out.stderr
    registered = json.loads((project / "reports/registered.json").read_text())
    assert set(registered) == {f"{t}{suffix}" for t in TINY_TARGETS for suffix in KINDS}
    # the DVC metrics are these models' headline figures, the same numbers as the full tables
    headline = json.loads((project / "reports/headline.json").read_text())
    test_metrics = json.loads((project / "reports/metrics.json").read_text())
    by_field = json.loads((project / "reports/metrics_breakdown.json").read_text())["calibration_by_field"]
    assert set(headline) == set(registered) | {"spectrum"}
    for name, entry in registered.items():
        metric = "sigma_mad" if entry["target"] == "z" else "mse"
        assert headline[name]["val_crps"] == entry["val_crps"]
        assert headline[name][f"test_{metric}"] == test_metrics[entry["target"]][entry["head"]][metric]
        fields = by_field[entry["target"]][entry["head"]]["test"]["calibrated"]
        worst = max((v["coverage_68"] for f, v in fields.items() if f != "all"), key=lambda c: abs(c - 0.683))
        assert headline[name]["test_coverage_68_worst_field"] == worst
    test = __import__("pandas").read_parquet(project / "data/prepared/test.parquet")
    from galaxyprop.data.astroclip import AstroclipFile

    with mlflow_store(store_uri(project)), AstroclipFile(project / "data/raw/astroclip.h5") as file:
        for name, entry in registered.items():
            target = entry["target"]
            assert entry["selection_metric"] == "crps" and entry["model"] == f"galaxyprop-{name}"
            model = mlflow.pyfunc.load_model(f"models:/galaxyprop-{name}@candidate")
            tags = MlflowClient().get_model_version_by_alias(f"galaxyprop-{name}", "candidate").tags
            assert tags["calibrated"] == "true" and tags["selection_metric"] == "crps"
            inside68, inside95 = [], []
            for field, rows in test.groupby("photsys"):
                served = model.predict(model_inputs(model, rows, file), params={"photsys": field})
                truth = rows[target].to_numpy()
                inside68 += list((truth >= served["q16"]) & (truth <= served["q84"]))
                inside95 += list((truth >= served["q02"]) & (truth <= served["q98"]))
            n = len(inside68)
            assert abs(np.mean(inside68) - 0.683) < 3 * np.sqrt(0.683 * 0.317 / n), (name, np.mean(inside68))
            # ~100 validation galaxies put no knot beyond +-1 sigma: the 95 % interval is the map's linear
            # extrapolation there (0.86 seen), still far from a 3x too narrow spread's 0.5
            assert np.mean(inside95) > 0.8, (name, np.mean(inside95))


def test_repro_is_a_no_op_and_reruns_only_what_changed(project):
    registered = (project / "reports/registered.json").read_text()
    again = run(["dvc", "repro"], project)
    # only register reruns (always: the registry is outside DVC's caches), onto the versions it registered
    assert {line.split("'")[1] for line in again.stdout.splitlines() if line.startswith("Running stage")} == {"register"}
    assert (project / "reports/registered.json").read_text() == registered
    with mlflow_store(store_uri(project)):
        assert len(MlflowClient().search_model_versions("name = 'galaxyprop-z'")) == 1
    # an edit to the code every stage imports (not a stage script) makes DVC see those stages changed
    common = project / "pipelines/common.py"
    source = common.read_text()
    common.write_text(source + "\n# an edit\n")
    try:
        changed = set(json.loads(run(["dvc", "status", "--json"], project).stdout))
    finally:
        common.write_text(source)
    assert {"prepare", "train@knn-z", "train_image@cnn-z", "train_image@cnn_mm-z", "evaluate",
            "drift"} <= changed, changed
    assert "import_data" not in changed                       # it does not import common
    assert_up_to_date(project)
    # (a params edit rerunning one head's stages and what reads them: tests/test_catalogue_pipeline.py)


def test_promote_cli_and_bad_input_keep_stores_intact(project):
    first = run(["galaxyprop", "promote", "z"], project)
    assert "first promotion" in first.stdout
    unknown = run(["galaxyprop", "promote", "redshift"], project, check=False)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    targets = ", ".join(sorted(yaml.safe_load((project / "params.yaml").read_text())["targets"]))
    assert unknown.stderr.strip().splitlines() == [
        f"galaxyprop: error: unknown model 'redshift'; choose a target of params targets ({targets}), optionally "
        "with -images or -catalogue, or spectrum"]

    prepared_before = (project / "data/prepared/train.parquet").read_bytes()
    bands = ["g", "r", "z", "W1"]
    edit_params(project, lambda p: p["data"]["sources"]["mock"].__setitem__("required_bands", ["g", "r", "Q"]))
    try:
        failed = run([sys.executable, "pipelines/prepare.py"], project, check=False)
    finally:
        edit_params(project, lambda p: p["data"]["sources"]["mock"].__setitem__("required_bands", bands))
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "required bands ['Q'] are not DESI bands" in failed.stderr.strip().splitlines()[-1]
    assert (project / "data/prepared/train.parquet").read_bytes() == prepared_before

    with mlflow_store(store_uri(project)):
        runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.mlflow.runName = 'prepare'",
                                  order_by=["start_time DESC"])
        assert runs.iloc[0]["status"] == "FAILED" and (runs["status"] == "FINISHED").any()
        client = MlflowClient()
        assert str(client.get_model_version_by_alias("galaxyprop-z", "production").version) == \
            str(client.get_model_version_by_alias("galaxyprop-z", "candidate").version)
    assert_up_to_date(project)


def assert_up_to_date(project: Path) -> None:
    """`dvc status` reports nothing but the register stage, which always reruns."""
    status = run(["dvc", "status", "--json"], project).stdout
    assert set(json.loads(status)) <= {"register"}, status


def tree_hashes(project: Path) -> dict[str, str]:
    """sha256 of every file of the outputs and the stores, but MLflow's `registered_model_meta`, which
    loading a version from the registry writes into the version's artifact folder (two versions that
    share a source take turns writing it)."""
    import hashlib

    files = {str(path.relative_to(project)): hashlib.sha256(path.read_bytes()).hexdigest()
             for folder in ("data", "models", "reports", "mlruns") for path in sorted((project / folder).rglob("*"))
             if path.is_file() and path.name != "registered_model_meta"}
    return {**files, **database_state(project)}


#: What the team store holds that a failed command must leave as it was: MLflow's runs, their tags and
#: metrics, the registry's versions and aliases; the Optuna studies' trials.
STORE_TABLES = {"mlflow": ["SELECT run_uuid, status, end_time FROM runs ORDER BY run_uuid",
                           "SELECT run_uuid, key, value FROM tags ORDER BY run_uuid, key",
                           "SELECT run_uuid, key, value, step FROM latest_metrics ORDER BY run_uuid, key",
                           "SELECT name, version, source, run_id FROM model_versions ORDER BY name, version",
                           "SELECT name, alias, version FROM registered_model_aliases ORDER BY name, alias"],
                "optuna": ["SELECT trial_id, number, state FROM trials ORDER BY trial_id",
                           "SELECT trial_id, value FROM trial_values ORDER BY trial_id"]}


def database_state(project: Path) -> dict[str, str]:
    """sha256 of each STORE_TABLES query on the project's PostgreSQL (the team store)."""
    import hashlib

    import psycopg

    base = yaml.safe_load((project / "params.yaml").read_text())["stores"]["optuna_storage"].rsplit("/", 1)[0]
    state = {}
    for database, queries in STORE_TABLES.items():
        with psycopg.connect(f"{base}/{database}") as connection:
            for query in queries:
                rows = connection.execute(query).fetchall()
                state[f"{database}: {query}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return state


@pytest.mark.parametrize("key, value, message", [      # every rule: tests/test_params_validation.py
    ("heads.knn.n_trials", "abc", "heads.knn.n_trials"),
    ("split.fractions", {"train": 1.2, "val": -0.35, "test": 0.15}, "split.fractions"),
    ("data.source", "mokc", "data.source"),
])
def test_invalid_params_stop_repro_before_any_output_is_removed(project, key, value, message):
    """`dvc repro` with a bad value stops at check_params with one line naming the key; every output,
    the registry and the Optuna studies are byte-identical afterwards."""
    texts = params_texts(project)
    before, status = tree_hashes(project), run(["dvc", "status", "--json"], project).stdout

    def edit(p):
        node = p
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    edit_params(project, edit)
    try:
        failed = run(["dvc", "repro"], project, check=False)
        cli = run(["galaxyprop", "models"], project, check=False)
    finally:
        for name, text in texts.items():
            (project / name).write_text(text)
    assert failed.returncode != 0 and "Traceback" not in failed.stdout + failed.stderr
    lines = [line for line in (failed.stdout + failed.stderr).splitlines() if line.startswith("galaxyprop: error:")]
    assert len(lines) == 1 and message in lines[0], failed.stdout + failed.stderr
    assert "Running stage 'check_params'" in failed.stdout and failed.stdout.count("Running stage") == 1
    assert cli.returncode == 2 and cli.stderr.strip().splitlines() == lines
    assert tree_hashes(project) == before
    assert run(["dvc", "status", "--json"], project).stdout == status


@contextmanager
def galaxyprop_server(project: Path, command: list[str], ready_path: str) -> Iterator[str]:
    """`galaxyprop <command> --port P` in its own process group, once GET `ready_path` answers; yields
    its base URL and stops the group by its PID at the end."""
    import signal
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    server = subprocess.Popen(["galaxyprop", *command, "--port", str(port)], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):  # up to about two minutes for the server to come up
            try:
                urllib.request.urlopen(base + ready_path, timeout=2).close()
                break
            except OSError:
                try:
                    server.wait(timeout=0.5)
                    raise AssertionError(f"galaxyprop {command[0]} exited before serving")
                except subprocess.TimeoutExpired:
                    continue
        else:
            raise AssertionError(f"galaxyprop {command[0]} did not answer")
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_ui_serves_the_project_store_on_localhost(project):
    """In team mode the tracking server is the UI: `galaxyprop ui` says so, and the server answers the
    UI's page and its registry queries on 127.0.0.1."""
    import urllib.request

    base = store_uri(project)
    told = run(["galaxyprop", "ui"], project)
    assert f"the tracking server {base} serves the MLflow UI" in told.stdout
    assert base.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(base + "/", timeout=10) as response:
        assert "MLflow" in response.read().decode()
    with urllib.request.urlopen(f"{base}/api/2.0/mlflow/registered-models/search", timeout=10) as response:
        body = json.loads(response.read())
    assert {m["name"] for m in body["registered_models"]} == {f"galaxyprop-{t}{suffix}" for t in TINY_TARGETS
                                                              for suffix in KINDS} | {"galaxyprop-spectrum"}


def post(url: str, body: bytes) -> tuple[int, dict | str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_served_production_answers_like_the_model_in_process(project):
    """make run -> promote -> serve -> HTTP predictions of real cutouts equal the pyfunc's; bad payloads get 400."""
    import pandas as pd

    from galaxyprop.data.astroclip import AstroclipFile

    run(["galaxyprop", "promote", "kcorr_r01-images"], project)
    test = pd.read_parquet(project / "data/prepared/test.parquet").head(12)
    with AstroclipFile(project / "data/raw/astroclip.h5") as file:
        images = file.cutouts(test["image_row"].to_numpy())
    with mlflow_store(store_uri(project)):
        expected = mlflow.pyfunc.load_model("models:/galaxyprop-kcorr_r01-images@production").predict(images)

    with galaxyprop_server(project, ["serve", "kcorr_r01-images"], "/ping") as base:
        url = f"{base}/invocations"
        status, body = post(url, json.dumps({"inputs": images.tolist()}).encode())
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        assert list(served.columns) == list(expected.columns)
        columns = ["prediction", "spread", "q02", "q16", "q50", "q84", "q98"]
        np.testing.assert_allclose(served[columns], expected[columns], rtol=1e-9, atol=1e-12)
        if "density" in expected:
            np.testing.assert_allclose(np.stack(served["density"]), np.stack(expected["density"]), rtol=1e-6)

        with_nan = images[:2].copy()
        with_nan[1, 0, 3, 3] = np.nan
        malformed = {"wrong shape": json.dumps({"inputs": images[:2, :2].tolist()}),
                     "NaN pixel": json.dumps({"inputs": with_nan.tolist()}),
                     "strings": json.dumps({"inputs": [["a", "b"]]}),
                     "not JSON": "{inputs: [1, 2",
                     "no rows": json.dumps({"inputs": []})}
        for what, payload in malformed.items():
            status, body = post(url, payload.encode())
            assert 400 <= status < 500, (what, status, body)
        assert "row 1 has NaN or infinite pixels" in post(url, malformed["NaN pixel"].encode())[1]


def test_models_history_rollback_and_lineage_cli(project):
    run(["galaxyprop", "promote", "kcorr_r01"], project, check=False)   # first promotion, if not done yet
    listing = run(["galaxyprop", "models"], project).stdout
    assert "galaxyprop-kcorr_r01" in listing and "production" in listing and "candidate" in listing
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()

    history = run(["galaxyprop", "history", "kcorr_r01"], project).stdout
    assert "promote" in history and "first promotion" in history
    refused = run(["galaxyprop", "rollback", "kcorr_r01", "--reason", "test"], project, check=False)
    assert refused.returncode == 2 and "nothing to roll back to" in refused.stderr

    lineage = run(["galaxyprop", "lineage", "kcorr_r01", "production"], project)
    assert f"git checkout {head} && dvc checkout && dvc repro" in lineage.stdout
    assert "data matches" in lineage.stdout
    test_split = project / "data/prepared/test.parquet"
    original = test_split.read_bytes()
    try:
        test_split.unlink()
        test_split.write_bytes(original[:-100] + b"\0" * 100)
        differs = run(["galaxyprop", "lineage", "kcorr_r01", "production"], project, check=False)
        assert differs.returncode == 3 and "data DIFFERS" in differs.stdout and "modified" in differs.stdout
    finally:
        test_split.unlink()
        test_split.write_bytes(original)
    assert run(["galaxyprop", "lineage", "kcorr_r01", "production"], project).returncode == 0


def test_drift_stage_cli_and_the_promotion_gate(project, tmp_path):
    summary = json.loads((project / "reports/drift/summary.json").read_text())
    assert set(summary) == {"south_vs_north", "south_train_vs_south_test"}
    for name, verdict in summary.items():
        assert {"share_drifted", "embedding_drift_score", "detected"} <= set(verdict)
        assert set(verdict["prediction_drift"]) == set(verdict["metrics"]) == set(TINY_TARGETS)
        html = (project / f"reports/drift/html/{name}.html").read_text()
        assert "Drift in embeddings" in html and "magerr_r" in html
    assert json.loads((project / "reports/drift/control.json").read_text())["n_splits"] == 3
    assert (project / "reports/plots/drift/drift_scores.png").stat().st_size > 10_000

    # A batch a user brings: the survey's own files with every flux 50 % brighter.
    from astropy.io import fits

    catalog = tmp_path / "brighter.fits"
    with fits.open(project / "data/raw/fastspec.fits", memmap=False) as hdul:
        for band in "GRZ":
            hdul["METADATA"].data[f"FLUX_{band}"] *= 1.5
        hdul.writeto(catalog)
    out = tmp_path / "drift"
    checked = run(["galaxyprop", "drift", "--current", "data/raw/astroclip.h5", "--current-catalog", str(catalog),
                   "--model", "candidate", "--out", str(out)], project, check=False)
    assert checked.returncode == 3, checked.stderr[-2000:]
    verdict = json.loads((out / "summary.json").read_text())["south_train_vs_astroclip"]
    assert verdict["detected"] and {"mag_g", "mag_r", "mag_z"} <= set(verdict["drifted_columns"])
    assert verdict["embedding_drift_score"] is not None and set(verdict["prediction_drift"]) == set(TINY_TARGETS)

    # The gate: drift on north and a limit the candidate misses -> refused; --force --reason -> promoted.
    with mlflow_store(store_uri(project)):     # a new candidate version (the same model)
        client = MlflowClient()
        production = client.get_model_version_by_alias("galaxyprop-z", "production")
        copy = client.create_model_version("galaxyprop-z", production.source, run_id=production.run_id,
                                           tags=production.tags,
                                           model_id=production.source.removeprefix("models:/"))  # the logged model
        client.set_registered_model_alias("galaxyprop-z", "candidate", copy.version)
    drift_summary = tmp_path / "summary.json"
    drift_summary.write_text(json.dumps({"south_vs_north": {"detected": True},
                                         "south_train_vs_south_test": {"detected": False}}))
    edit_params(project, lambda p: p["registry"]["promotion"]["drift_limits"]["z"].__setitem__("sigma_mad", 1e-6))
    promote = ["galaxyprop", "promote", "z", "--drift-summary", str(drift_summary)]
    refused = run(promote, project, check=False)
    assert refused.returncode == 1
    assert "drift detected on 'north': sigma_mad there = " in refused.stderr
    assert "misses the limit 1e-06" in refused.stderr
    forced = run([*promote, "--force", "--reason", "north checked by hand"], project)
    assert "forced: north checked by hand; overriding: drift detected on 'north'" in forced.stdout
    history = run(["galaxyprop", "history", "z"], project).stdout
    assert "force" in history and "north checked by hand" in history


def bad_input_files(project: Path, folder: Path) -> dict[str, Path]:
    """Files a user might bring that are wrong in one way each."""
    import shutil

    import h5py
    import pandas as pd

    from astroclip_layouts import write_grouped

    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(project / "data/raw/astroclip.h5") as handle:
        n = len(handle["targetids"])
    corrupt = write_grouped(project / "data/raw/astroclip.h5", folder / "corrupt.h5", [n // 2, n - n // 2],
                            compression="gzip")
    with h5py.File(corrupt, "r") as handle:
        info = handle["1"]["images"].id.get_chunk_info(3)
    with open(corrupt, "r+b") as raw:
        raw.seek(info.byte_offset)
        raw.write(b"\xff" * info.size)
    test = pd.read_parquet(project / "data/prepared/test.parquet")
    fluxes = test[[c for c in test.columns if c.startswith("flux_")]]
    fluxes.assign(flux_g="bright").to_parquet(folder / "text_flux.parquet")
    fluxes.iloc[:0].assign(TARGETID=[]).to_csv(folder / "empty.csv", index=False)
    repeated = folder / "repeated_ids.h5"
    shutil.copyfile(project / "data/raw/astroclip.h5", repeated)
    with h5py.File(repeated, "r+") as handle:
        handle["targetids"][5] = handle["targetids"][4]
    return {"corrupt": corrupt, "text_flux": folder / "text_flux.parquet", "repeated_ids": repeated,
            "empty": folder / "empty.csv"}


BAD_INPUTS = [  # (command, the one line must contain)
    (["predict", "kcorr_r01", "--model", "candidate", "--input", "{corrupt}", "--output", "{out}"],
     "corrupt.h5: rows"),
    (["drift", "--current", "{text_flux}", "--model", "none", "--out", "{out}"],
     "text_flux.parquet: column 'flux_g' holds text, not numbers (row 0: 'bright'"),
    (["drift", "--current", "{corrupt}", "--model", "none", "--out", "{out}"], "unreadable"),
    (["predict", "z", "--model", "candidate", "--input", "{repeated_ids}", "--output", "{out}"],
     "repeated_ids.h5: targetids (rows 0-"),
    (["predict", "z-images", "--model", "candidate", "--input", "{empty}", "--output", "{out}"],
     "empty.csv: the model takes image cutouts or spectra"),
    (["predict", "z", "--model", "candidate", "--input", "{empty}", "--output", "{out}"],   # z-catalogue
     "empty.csv: no rows to predict"),
    (["predict", "z", "--model", "candidate", "--input", "{empty}", "--output", "{out}", "--source", "nope"],
     "unknown source 'nope'"),
    (["predict", "z", "--model", "candidate", "--input", "{empty}", "--output", "{out}", "--source", "mock"],
     "source 'mock' is a 'desi' source"),
    (["promote", "z", "--force"], "--force needs --reason"),
]


def test_bad_inputs_answer_in_one_line_and_change_nothing(project, tmp_path):
    """Each bad file or argument: exit 2, one line naming the file (and rows or column), no traceback,
    and every output, the registry and the Optuna studies byte-identical afterwards."""
    files = {k: str(v) for k, v in bad_input_files(project, tmp_path / "bad").items()}
    before = tree_hashes(project)
    out = tmp_path / "out.parquet"
    for command, expected in BAD_INPUTS:
        argv = [part.format(**files, out=out) for part in command]
        result = run(["galaxyprop", *argv], project, check=False)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and "Traceback" not in result.stderr, (argv, result.stderr[-2000:])
        assert lines and lines[-1].startswith("galaxyprop: error: ") and expected in lines[-1], (argv, lines)
        # nothing written, and no partial run left to refuse the next try
        assert not out.exists() and not out.with_name(out.name + ".parts").exists()
    assert tree_hashes(project) == before


def test_a_train_stage_with_two_tuning_workers_on_the_team_store(project):
    """The real train stage with tuning.workers: 2 on a new study (gbt with another max_iter): exactly
    n_trials complete trials in PostgreSQL, shared by the stage's process and its forked worker, each
    with its MLflow trial run under the stage's run; the best trial's model is the one kept."""
    import optuna

    edit_params(project, lambda p: (p["tuning"].__setitem__("workers", 2), p["heads"]["gbt"].__setitem__("n_trials", 4),
                                    p["heads"]["gbt"]["fixed"].__setitem__("max_iter", 40)))
    run([sys.executable, "pipelines/train.py", "--head", "gbt", "--target", "z", "--features", "photometry"], project)
    best = json.loads((project / model_dir("z", "gbt@photometry") / "best_params.json").read_text())
    assert best["params"]["max_iter"] == 40
    storage = yaml.safe_load((project / "params.yaml").read_text())["stores"]["optuna_storage"]
    study = optuna.load_study(study_name=best["study"], storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4 and best["best_trial"] == study.best_trial.number
    workers = {t.user_attrs["worker"].rsplit("/", 1)[1] for t in study.trials}
    assert workers == {"0", "1"}, [t.user_attrs["worker"] for t in study.trials]
    assert json.loads((project / model_dir("z", "gbt@photometry") / "tuning.json").read_text())["n_complete"] == 4
    with mlflow_store(store_uri(project)):
        trials = mlflow.search_runs(search_all_experiments=True,
                                    filter_string=f"tags.optuna_study = '{best['study']}'")
        parent = mlflow.search_runs(search_all_experiments=True, order_by=["start_time DESC"],
                                    filter_string="tags.mlflow.runName = 'train:gbt@photometry:z'").iloc[0]
    assert len(trials) == 4 and set(trials["tags.mlflow.parentRunId"]) == {parent["run_id"]}
    assert set(trials["status"]) == {"FINISHED"} and parent["params.tuning_workers"] == "2"
    assert trials["tags.optuna_worker"].str.rsplit("/", n=1).str[1].nunique() == 2
    # refused in one line on the sqlite stores, at check_params, before anything runs
    edit_params(project, lambda p: p["stores"].update(tracking_uri="sqlite:///mlruns/mlflow.db",
                                                        optuna_storage="sqlite:///mlruns/optuna.db"))
    refused = run(["dvc", "repro"], project, check=False)
    lines = [line for line in (refused.stdout + refused.stderr).splitlines() if line.startswith("galaxyprop: error:")]
    assert refused.returncode != 0 and len(lines) == 1 and "tuning.workers: 2 workers need stores on a database server" \
        in lines[0], refused.stdout[-2000:] + refused.stderr[-2000:]
