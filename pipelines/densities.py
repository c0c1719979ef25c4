"""Stage densities: every trained model that gives a probability density (knn histograms, the
MC-dropout Gaussians of mlp and cnn, clap) writes its test-split densities on the target's grid."""

from __future__ import annotations

import json
import logging

from common import DENSITIES, MODELS, SKIPPED, split_inputs

from galaxyprop import tracking
from galaxyprop.config import Stores, load_params, section
from galaxyprop.data import schema
from galaxyprop.data.density_file import write_densities
from galaxyprop.densities import Grid
from galaxyprop.errors import exit_on_error
from galaxyprop.predictor import Predictor

log = logging.getLogger("densities")


@exit_on_error
def main() -> None:
    params = load_params()
    with tracking.stage_run(Stores.from_params(params), "densities",
                            params={t: section(params, f"targets.{t}.grid") for t in schema.TARGETS}):
        for target in schema.TARGETS:
            grid = Grid.from_params(section(params, f"targets.{target}.grid"))
            for folder in sorted(p for p in (MODELS / target).glob("*") if p.is_dir()):
                if (folder / SKIPPED).exists():
                    continue
                predictor = Predictor.load(folder / "predictor.joblib")
                if not predictor.head.gives_density:
                    continue
                features = json.loads((folder / "best_params.json").read_text())["features"]
                X, _, frame = split_inputs(predictor.head.name, features, "test", target)
                path = DENSITIES / target / f"{folder.name}.h5"
                write_densities(path, frame[schema.ID].to_numpy(), predictor.head.predict_pdf(X, grid), grid,
                                target=target, head=folder.name, split="test")
                log.info("%s: %d test densities", path, len(frame))
        tracking.log_artifacts([DENSITIES], artifact_path="densities")


if __name__ == "__main__":
    main()
