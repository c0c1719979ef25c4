"""A user's catalogue end to end: real SDSS galaxies as two CSV files (train and test) with string
ids, magnitudes and extinction in RAIL's convention (`mag_<band>_sdss`, `mag_err_<band>_sdss`, `redshift`;
a faint u band as magnitude 99 with its 1-sigma limit in the error column), a new source in params, a RAIL
estimator beside galaxyprop's heads, `dvc repro`, and `galaxyprop predict --source` on the test file
giving the pipeline's own predictions for the same galaxies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from galaxyprop.workspace import predictions_path

from conftest import gst_path
from project_copy import copy_project, edit_params, run, set_hyperparameters

pytestmark = pytest.mark.integration
BANDS = "ugriz"
RESPONSES = {b: f"sdss_{b}0" for b in BANDS}
AB_OFFSETS = {"u": -0.036, "g": 0.012, "r": 0.010, "i": 0.028, "z": 0.040}


def sdss_as_csv(rows: slice, path) -> pd.DataFrame:
    """gst_tests_small.fits rows as a user's table in RAIL's convention: `name` (e.g. sdss00017), `redshift`,
    per band the catalogue magnitude (SDSS asinh-free nanomaggies -> mag), its error and the extinction; a u
    flux below twice its error is a non-detection: magnitude 99, the 1-sigma limiting magnitude as its error."""
    with fits.open(gst_path()) as hdul:
        data = hdul[1].data[rows]
    index = np.arange(rows.start, rows.stop)
    table = pd.DataFrame({"name": [f"sdss{i:05d}" for i in index], "redshift": data["Z"].astype(float)})
    flux, ivar, extinction = (np.asarray(data[c], float) for c in ("MODELFLUX", "MODELFLUX_IVAR", "EXTINCTION"))
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, band in enumerate(BANDS):
            mag = np.where(flux[:, k] > 0, 22.5 - 2.5 * np.log10(flux[:, k]), 99.0)
            err = np.where(ivar[:, k] > 0, 2.5 / np.log(10) / (flux[:, k] * np.sqrt(ivar[:, k])), 99.0)
            if band == "u":
                undetected = flux[:, k] * np.sqrt(ivar[:, k]) < 2
                mag = np.where(undetected, 99.0, mag)
                err = np.where(undetected, 22.5 - 2.5 * np.log10(1 / np.sqrt(ivar[:, k])), err)
            table[f"mag_{band}_sdss"], table[f"mag_err_{band}_sdss"] = mag, err
            table[f"ext_{band}"] = extinction[:, k]
    table.to_csv(path, index=False)
    return table


def my_catalogue(params: dict) -> None:
    """The user's catalogue as a source, and a small profile."""
    params["data"]["source"] = "mine"
    params["data"]["sources"]["mine"] = {
        "kind": "catalog", "paths": {"train": "my_train.csv", "test": "my_test.csv"}, "split": "file",
        "columns": {"id": "name", "redshift": "redshift"},
        "bands": {b: {"response": RESPONSES[b], "mag": f"mag_{b}_sdss", "mag_err": f"mag_err_{b}_sdss",
                      "extinction": f"ext_{b}", "ab_offset": AB_OFFSETS[b]} for b in BANDS},
        "required_bands": list(BANDS),
        "label": {"bands": list(BANDS), "response_out": "sdss_r0", "response_map": "sdss_r0", "band_shift": 0.1}}
    params["features"].update(default="photometry", compare=["photometry"])
    # what the catalogue gives: z and its kcorrect label fit's K(^{0.1}r) (the property targets' stages would
    # only record that the source lacks them: ten processes of DVC and imports for nothing)
    params["train"]["targets"] = ["z", "kcorr_r01"]
    heads = params["heads"]
    heads["knn"]["n_trials"] = 2
    heads["gbt"].update(n_trials=1)
    set_hyperparameters(params, "gbt", max_iter=40)
    # galaxyprop's knn and gbt (the candidates) and RAIL's KNN beside them (mlp and clap on a catalogue: the
    # SDSS accuracy tests and the integration test)
    params["train"]["feature_heads"] = ["knn", "gbt", "rail_knn"]
    heads["rail_knn"]["n_trials"] = 1
    params["baselines"]["kcorrect_specz"]["n_mc"] = 2
    params["baselines"]["kcorrect_photoz"]["n_mc"] = 2
    params["calibration"]["min_calibration_rows"] = 60
    params["registry"]["candidate_heads"] = ["knn", "gbt", "rail_knn"]
    params["drift"]["control_splits"] = 2


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("catalogue"))
    sdss_as_csv(slice(0, 900), root / "my_train.csv")
    sdss_as_csv(slice(900, 1300), root / "my_test.csv")
    edit_params(root, my_catalogue)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "my catalogue"], root)
    run(["dvc", "repro"], root)
    return root


def test_the_file_split_and_string_ids_reach_the_prepared_data(project):
    test = pd.read_parquet(project / "data/prepared/test.parquet")
    train = pd.read_parquet(project / "data/prepared/train.parquet")
    val = pd.read_parquet(project / "data/prepared/val.parquet")
    assert test["id"].map(type).eq(str).all() and test["id"].str.fullmatch(r"sdss0(09\d\d|1[0-2]\d\d)").all()
    assert not set(train["id"]) & set(test["id"]) and not set(val["id"]) & set(test["id"])
    assert set(train["id"]) | set(val["id"]) <= {f"sdss{i:05d}" for i in range(900)}
    assert len(test) > 300 and len(train) > 3 * len(val) > 300


def test_non_detections_are_kept_and_counted_and_the_rail_head_is_compared(project):
    """The u non-detections (magnitude 99) are kept at their limit and counted; RAIL's KNN is evaluated
    beside galaxyprop's heads, on the same test galaxies, with the same metrics."""
    import json

    summary = json.loads((project / "reports/prepare.json").read_text())
    written = pd.concat([pd.read_csv(project / f) for f in ("my_train.csv", "my_test.csv")]).set_index("name")
    prepared = pd.concat([pd.read_parquet(project / f"data/prepared/{s}.parquet") for s in ("train", "val", "test")])
    undetected = prepared[prepared["id"].isin(written.index[written["mag_u_sdss"] == 99])]
    assert summary["nondetections"] == {"u": len(undetected)} and len(undetected) >= 5
    assert not any("u flux" in reason for reason in summary["dropped_by_reason"])
    # each kept at its 1-sigma limit: signal-to-noise 1 there (before the extinction correction scales both)
    np.testing.assert_allclose(undetected["flux_u"] * np.sqrt(undetected["flux_ivar_u"]), 1.0, rtol=1e-6)
    metrics = json.loads((project / "reports/metrics.json").read_text())
    rail, knn = metrics["z"]["rail_knn"], metrics["z"]["knn"]      # keyed by the head alone on features.default
    assert set(rail) == set(knn)          # the same metrics, calibrated and raw, as every head
    assert rail["sigma_mad"] < 0.03 and 0.55 < rail["coverage_68"] < 0.8


def test_predict_source_on_the_test_file_gives_the_pipelines_predictions(project):
    """The registered candidate, given the user's own test file in the training catalogue's format
    (magnitudes, extinction, string ids), predicts what the pipeline predicted for those galaxies."""
    import json

    registered = json.loads((project / "reports/registered.json").read_text())
    # a catalogue source registers the catalogue-in model of each target alone
    assert set(registered) == {"z-catalogue", "kcorr_r01-catalogue"}
    for target in ("z", "kcorr_r01"):
        entry = registered[f"{target}-catalogue"]
        assert entry["version"] is not None, entry
        out = project / f"served_{target}.parquet"
        result = run(["galaxyprop", "predict", target, "--model", "candidate", "--input", "my_test.csv",
                      "--source", "mine", "--output", str(out)], project)
        assert "predictions of galaxyprop" in result.stdout
        served = pd.read_parquet(out).set_index("TARGETID")
        result = entry["head"] if "@" in entry["head"] else f"{entry['head']}@photometry"
        pipeline = pd.read_parquet(project / predictions_path(target, result))
        pipeline = pipeline[pipeline["split"] == "test"].set_index("id")
        assert all(isinstance(i, str) for i in served.index) and set(pipeline.index) <= set(served.index)
        joined = pipeline.join(served, rsuffix="_served", how="inner")
        assert len(joined) == len(pipeline) > 300
        np.testing.assert_allclose(joined["prediction_served"], joined["prediction"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(joined["spread_served"], joined["spread"], rtol=1e-4, atol=1e-7)


def test_predict_uses_the_training_source_by_default(project):
    """Without --source, a file lacking the model's flux columns is read with the source the version
    was trained on (its `dataset` tag)."""
    result = run(["galaxyprop", "predict", "z", "--model", "candidate", "--input", "my_test.csv",
                  "--output", "default.parquet"], project)
    assert "column map of source 'mine'" in result.stdout
    explicit = project / "served_z.parquet"
    if explicit.exists():
        pd.testing.assert_frame_equal(pd.read_parquet(project / "default.parquet"), pd.read_parquet(explicit))


def candidates_in_store(project) -> dict[str, str]:
    """Registered model name -> the version its `candidate` alias points at, in the project's sqlite store."""
    import sqlite3

    with sqlite3.connect(project / "mlruns/mlflow.db") as db:
        rows = db.execute("SELECT name, version FROM registered_model_aliases WHERE alias = 'candidate'").fetchall()
    return {name: str(version) for name, version in rows}


def assert_registry_matches_the_report(project) -> None:
    import json

    registered = json.loads((project / "reports/registered.json").read_text())
    expected = {e["model"]: str(e["version"]) for e in registered.values() if e["version"] is not None}
    assert expected and candidates_in_store(project) == expected


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_a_no_op_repro_registers_nothing_and_the_registry_follows_the_report(project):
    """DVC's no-op: only register runs, and answers from the store's fingerprint without registering;
    the registry matches reports/registered.json after a moved alias (what an interrupted registration
    leaves), a deleted store, and a run-cache replay of changed-then-restored params."""
    import json
    import shutil

    assert_registry_matches_the_report(project)
    again = run(["dvc", "repro"], project)
    assert stages_run(again.stdout) == {"register"}
    assert "nothing to register" in again.stderr + again.stdout
    # a candidate alias moved away (by hand, the MLflow UI, or a registration killed between two models)
    from mlflow.tracking import MlflowClient

    from conftest import mlflow_store

    registered = json.loads((project / "reports/registered.json").read_text())
    entry = registered["z-catalogue"]
    with mlflow_store(f"sqlite:///{project}/mlruns/mlflow.db"):
        MlflowClient().delete_registered_model_alias(entry["model"], "candidate")
    moved = run(["dvc", "repro"], project)
    assert "nothing to register" not in moved.stderr + moved.stdout
    assert_registry_matches_the_report(project)
    # the whole store deleted: the next repro registers every candidate again
    shutil.rmtree(project / "mlruns")
    run(["dvc", "repro"], project)
    assert_registry_matches_the_report(project)
    assert "nothing to register" in run(["dvc", "repro"], project).stderr
    # params changed and restored: DVC replays the train stages from its run cache, register follows
    report = (project / "reports/registered.json").read_text()
    edit_params(project, lambda p: p["heads"]["knn"].__setitem__("n_trials", 1))
    ran = stages_run(run(["dvc", "repro"], project).stdout)
    # the knn stages rerun, and of the rest only what reads their predictions (if they changed) or drift's
    # verdicts (adapt): the other heads and the baselines are untouched
    knn = {"train@knn-z", "train@knn-kcorr_r01"}        # one stage per head x target, every source inside
    assert knn <= ran <= knn | {"check_params", "evaluate", "compare", "register", "drift", "adapt"}, ran
    assert_registry_matches_the_report(project)
    edit_params(project, lambda p: p["heads"]["knn"].__setitem__("n_trials", 2))
    restored = run(["dvc", "repro"], project)
    assert "train@knn-z" not in stages_run(restored.stdout)          # restored from the run cache, not run
    assert (project / "reports/registered.json").read_text() == report
    assert_registry_matches_the_report(project)


def test_predict_writes_a_qp_file_with_the_string_ids_and_says_how_many_lie_outside(project):
    """`--output z.hdf5`: the densities as a qp ensemble that qp.read opens, the user's string ids and the
    point estimates as ancillary data (the Parquet's numbers); the support line counts the galaxies
    outside the training range."""
    import qp

    table = run(["galaxyprop", "predict", "z", "--model", "candidate", "--input", "my_test.csv",
                 "--output", "qp_twin.parquet"], project)
    result = run(["galaxyprop", "predict", "z", "--model", "candidate", "--input", "my_test.csv",
                  "--output", "z.hdf5"], project)
    assert "(a qp ensemble: qp.read opens it)" in result.stdout
    assert "training support" in table.stdout and "training support" in result.stdout
    ensemble, served = qp.read(str(project / "z.hdf5")), pd.read_parquet(project / "qp_twin.parquet")
    assert ensemble.npdf == len(served) > 300
    assert list(ensemble.ancil["TARGETID"].astype(str)) == list(served["TARGETID"])
    assert all(isinstance(i, str) for i in served["TARGETID"])
    np.testing.assert_allclose(ensemble.ancil["q50"], served["q50"])
    np.testing.assert_array_equal(ensemble.ancil["in_support"], served["in_support"])
    assert not (project / "z.hdf5.parquet").exists()


def test_the_image_baseline_skips_itself_on_a_catalogue_and_says_why(project):
    """kcorrect at the image photo-z (in the default params) needs images: on a catalogue its stage
    records why it did not apply and leaves an empty predictions file, as the train stages do."""
    import json

    from galaxyprop.workspace import baseline_summary

    summary = json.loads((project / baseline_summary("kcorrect_photoz@image")).read_text())
    assert summary == {"skipped": "data source 'mine' has no images: no image photo-z to fit at"}
    assert pd.read_parquet(project / predictions_path("kcorr_r01", "kcorrect_photoz@image")).empty
    assert not pd.read_parquet(project / predictions_path("kcorr_r01", "kcorrect_photoz@photometry")).empty
