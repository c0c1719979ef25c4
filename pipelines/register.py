"""Stage register: the best head per target (validation metric) becomes the registry's `candidate`."""

from __future__ import annotations

import json
import logging

from common import PREPARED, REPORTS, inputs_of, model_dir, model_inputs, prepared_split, result_of

from galaxyprop import registry, tracking
from galaxyprop.config import Stores, load_params, params_hash, section
from galaxyprop.data.io import write_json
from galaxyprop.errors import GalaxypropError, exit_on_error
from galaxyprop.metrics import objective_value
from galaxyprop.predictor import Predictor
from galaxyprop.provenance import dvc_output_hash, git_commit

log = logging.getLogger("register")


def best_head(val_metrics: dict, heads: list[str], metric: str) -> str:
    present = [h for h in heads if h in val_metrics]
    if not present:
        raise GalaxypropError(f"none of the candidate heads {heads} has validation metrics")
    return min(present, key=lambda h: objective_value(metric, val_metrics[h][metric]))


@exit_on_error
def main() -> None:
    params = load_params()
    val_all = json.loads((REPORTS / "val_metrics.json").read_text())
    test_all = json.loads((REPORTS / "metrics.json").read_text())
    candidates = list(section(params, "registry.candidate_heads"))
    example = prepared_split("test").head(5)
    default_features = section(params, "features.default")
    data_hash = dvc_output_hash(PREPARED) or "untracked"
    registered = {}
    with tracking.stage_run(Stores.from_params(params), "register", params={"registry": params["registry"]}):
        for target, val_metrics in val_all.items():
            metric = section(params, f"targets.{target}.metric")
            head = best_head(val_metrics, candidates, metric)
            name = result_of(head, default_features)
            head_name, features = name.partition("@")[0], inputs_of(head, default_features)
            predictor = Predictor.load(model_dir(target, name) / "predictor.joblib")
            tags = {"git_commit": git_commit(), "data_hash": data_hash, "head": head_name,
                    "features": features, "dataset": section(params, "data.source"), "target": target,
                    "params_hash": params_hash(params["data"], params.get("mock"), params["split"],
                                               params["features"], params.get("encoder"), params["heads"][head_name]),
                    "selection_metric": metric, f"val_{metric}": f"{val_metrics[head][metric]:.6g}"}
            with tracking.child_run(f"register:{head}:{target}", tags=tags):
                inputs = model_inputs(predictor.input_kind, example, features)
                version = registry.register_predictor(predictor, inputs, tags, test_all[target][head])
            registered[target] = {"model": registry.model_name(target), "version": version, "head": head,
                                  f"val_{metric}": val_metrics[head][metric]}
            log.info("registered %s version %s (%s, val %s = %.5g) as candidate",
                     registry.model_name(target), version, head, metric, val_metrics[head][metric])
        write_json(registered, REPORTS / "registered.json")


if __name__ == "__main__":
    main()
