"""The MLflow UI compares results as runs: each `train` run is one result with the served figures under
the keys every head shares, its datasets, and an experiment that says what it holds."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from galaxyprop.tracking import runs as tracking


def test_the_experiment_describes_itself_and_opens_as_model_training(store):
    experiment = MlflowClient().get_experiment_by_name(store.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "val_crps" in experiment.tags["mlflow.note.content"]


def test_served_metrics_share_keys_across_heads_and_raw_ones_are_prefixed():
    metrics = {"crps": 0.019, "crps_raw": 0.0195, "coverage_68": 0.676, "coverage_68_raw": 0.647,
               "sigma_mad_mode": 0.021, "n_bad": float("nan")}
    assert tracking.result_metrics("val", metrics) == {
        "val_crps": 0.019, "raw_val_crps": 0.0195, "val_coverage_68": 0.676, "raw_val_coverage_68": 0.647,
        "val_sigma_mad_mode": 0.021}


def test_served_metrics_land_on_the_latest_train_run_of_each_result(store):
    """Two runs of knn@photometry on z (a rerun) and one of clap: the newer knn run and the clap run get
    their figures; a result with no run is named; each train run lists its datasets with the DVC digest."""
    frame = pd.DataFrame({"id": [1, 2, 3], "z": [0.1, 0.2, 0.3]})
    ids = {}
    for name, head in (("old", "knn@photometry"), ("new", "knn@photometry"), ("clap", "clap")):
        with tracking.stage_run(store, f"train:{head}:z", tags={"head": head, "target": "z"}) as run:
            tracking.log_datasets({"training": frame, "validation": frame}, "data/prepared", "0123abcd.dir")
            ids[name] = run.info.run_id
    missing = tracking.log_to_result_runs(
        mlflow.get_experiment_by_name(store.experiment).experiment_id,
        {("knn@photometry", "z"): {"val_crps": 0.02}, ("clap", "z"): {"val_crps": 0.018},
         ("gbt", "z"): {"val_crps": 0.03}})
    assert missing == ["gbt/z"]
    client = MlflowClient()
    assert client.get_run(ids["new"]).data.metrics == {"val_crps": 0.02}
    assert client.get_run(ids["old"]).data.metrics == {}
    assert client.get_run(ids["clap"]).data.metrics == {"val_crps": 0.018}
    inputs = client.get_run(ids["clap"]).inputs.dataset_inputs
    assert sorted(i.tags[0].value for i in inputs) == ["training", "validation"]
    assert {i.dataset.digest for i in inputs} == {"0123abcd.dir"}
    # sorted by val_crps, the runs table ranks the results as the registry does
    ranked = client.search_runs([mlflow.get_experiment_by_name(store.experiment).experiment_id],
                                "metrics.val_crps > 0", order_by=["metrics.val_crps ASC"])
    assert [r.data.tags["head"] for r in ranked] == ["clap", "knn@photometry"]
