"""Stage adapt: where drift was detected, does adaptation help? Per target, an MLP on the image
embeddings (params adaptation.mlp) trained on the reference field alone (before),
a domain-adversarial MLP given the drifted field's training galaxies without their labels, and an
MLP trained on both fields' labels; each one's metric on every field's test galaxies, and how well a
classifier tells the fields apart from its last hidden layer (the adversary's aim: AUC 0.5)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import torch

from galaxyprop.config import Stores, section
from galaxyprop.data import schema
from galaxyprop.data.io import write_json
from galaxyprop.data.targets import TARGETS_SCHEMA
from galaxyprop.errors import exit_on_error
from galaxyprop.evaluation.plots import adaptation_bars
from galaxyprop.heads.adversarial import DomainAdversarialHead
from galaxyprop.heads.mlp import MLPHead
from galaxyprop.heads.params import ADAPTATION_SCHEMA, TRAIN_SCHEMA
from galaxyprop.monitoring.drift import DriftSettings, embedding_drift
from galaxyprop.monitoring.params import DRIFT_SCHEMA
from galaxyprop.monitoring.samples import field_names
from galaxyprop.registry.promotion import drifted_fields, metric_function
from galaxyprop.tracking import runs as tracking
from galaxyprop.workspace import ADAPTATION, ADAPTATION_PLOTS, DRIFT_SUMMARY, FEATURES, SKIPPED, feature_path

from common import prepared_split, save_figure
from stage import stage_params

OUT = ADAPTATION
PLOTS = ADAPTATION_PLOTS
log = logging.getLogger("adapt")


def split_with_embeddings(split: str) -> tuple[pd.DataFrame, np.ndarray]:
    frame = prepared_split(split)
    table = pd.read_parquet(feature_path("image", split)).set_index(schema.ID)
    return frame, table.loc[frame[schema.ID]].to_numpy(np.float32)


def hidden_features(head: MLPHead, X: np.ndarray) -> np.ndarray:
    net = head.net_.eval()
    with torch.inference_mode():
        return net.regressor[:-1](net.trunk(torch.from_numpy(X))).numpy()


@exit_on_error
def main() -> None:
    params = stage_params(ADAPTATION_SCHEMA, DRIFT_SCHEMA, TARGETS_SCHEMA, TRAIN_SCHEMA)
    spec = section(params, "adaptation")
    reference_field = section(params, "drift.reference_field")
    drifted = drifted_fields(json.loads((DRIFT_SUMMARY).read_text()))
    result = {"reference_field": reference_field, "drifted_fields": drifted}
    if (FEATURES / "image" / SKIPPED).exists():
        drifted, result["skipped"] = [], "the source has no images, so no image embeddings to adapt"
    elif not drifted:
        result["skipped"] = "no drift detected on any field: nothing to adapt to"
    with tracking.stage_run(Stores.from_params(params), "adapt", params={"adaptation": spec}):
        if not drifted:
            log.info(result["skipped"])
            write_json(result, OUT)
            save_figure(adaptation_bars(result, []), PLOTS / "fields.png")
            return
        fields = {s: split_with_embeddings(s) for s in ("train", "test")}
        names = {s: field_names(frame) for s, (frame, _) in fields.items()}
        (train, X_train), (test, X_test) = fields["train"], fields["test"]
        source = names["train"] == reference_field
        hyper = dict(spec["mlp"])
        metric_of = metric_function(params)
        targets = [t for t in spec.get("targets") or section(params, "train.targets") if t in train.columns]
        for target in targets:
            metric = section(params, f"targets.{target}.metric")
            y_train = train[target].to_numpy(float)
            # A fixed number of epochs for all three: early stopping on the reference field's validation
            # loss stops the adversarial one before its ramped-up adversary has acted.
            heads = {
                "reference_only": MLPHead(**hyper).fit(X_train[source], y_train[source]),
                "adversarial": DomainAdversarialHead(adversary_weight=spec["adversary_weight"],
                                                     discriminator_speed=spec["discriminator_speed"], **hyper)
                .fit(X_train[source], y_train[source], unlabelled=X_train[np.isin(names["train"], drifted)]),
                "both_fields": MLPHead(**hyper).fit(X_train, y_train),
            }
            result[target] = {"metric": metric}
            truth = test[target].to_numpy(float)
            for variant, head in heads.items():
                predicted = head.predict(X_test).value
                scores = {field: metric_of(target, truth[names["test"] == field],
                                           predicted[names["test"] == field])[metric]
                          for field in [reference_field, *drifted]}
                hidden = hidden_features(head, X_test)
                auc = {f: embedding_drift(hidden[names["test"] == reference_field], hidden[names["test"] == f],
                                          DriftSettings())["score"] for f in drifted}
                result[target][variant] = {metric: scores, "field_classifier_auc": auc}
                log.info("%s %s: %s %s; fields told apart from its hidden layer with AUC %s", target, variant,
                         metric, {k: round(v, 5) for k, v in scores.items()}, {k: round(v, 3) for k, v in auc.items()})
        write_json(result, OUT)
        tracking.log_metrics({t: v for t, v in result.items() if t in targets})
        tracking.log_artifacts([OUT], "drift")
        save_figure(adaptation_bars(result, targets), PLOTS / "fields.png")
        tracking.log_artifacts([PLOTS], "plots/adaptation")


if __name__ == "__main__":
    main()
