"""What the images could add, measured with the mock's truth (its MOCKTRUTH HDU): a GBT on the
catalogue photometry, on the noiseless photometry, on the noiseless photometry plus the true
morphology (half-light radius, bulge fraction, axis ratio), and on the catalogue plus the sep
measurements of the cutouts (`measured+photometry`), all on the same splits; then which fraction of
the available gain (catalogue -> noiseless + morphology) the pipeline's best multimodal model captures.

    python benchmarks/ceiling.py [PROJECT]     # on a project whose `dvc repro` has run (default: this one)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
TARGETS = {"z": "sigma_mad", "kcorr_r01": "mse"}
GBT = {"learning_rate": 0.1, "max_iter": 600, "max_leaf_nodes": 31, "min_samples_leaf": 20}


def truth_table(root: Path) -> pd.DataFrame:
    """The mock's truth per galaxy (TARGETID as the prepared `id`)."""
    from astropy.table import Table

    truth = Table.read(root / "data/raw/fastspec.fits", hdu="MOCKTRUTH").to_pandas()
    return truth.rename(columns={"TARGETID": "id"}).set_index("id")


def feature_sets(root: Path, split: str, truth: pd.DataFrame, bands: list[str]) -> tuple[pd.DataFrame, dict]:
    """The split's catalogue rows and each feature set's matrix for them."""
    from galaxyprop.data import schema
    from galaxyprop.features.photometry import PhotometryFeatures

    frame = pd.read_parquet(root / f"data/prepared/{split}.parquet")
    rows = truth.loc[frame[schema.ID]]
    noiseless = PhotometryFeatures(bands=tuple(bands)).transform(
        pd.DataFrame({schema.flux_column(b): rows[f"FLUX_{b.upper()}_TRUE"].to_numpy() for b in bands}))
    bulge = rows["BULGE_FRACTION"].to_numpy()
    size = bulge * rows["BULGE_HLR_ARCSEC"].to_numpy() + (1 - bulge) * rows["DISK_HLR_ARCSEC"].to_numpy()
    axis = bulge * rows["BULGE_Q"].to_numpy() + (1 - bulge) * rows["DISK_Q"].to_numpy()
    morphology = np.column_stack([np.log10(size), bulge, axis])

    def table(source: str) -> np.ndarray:
        matrix = pd.read_parquet(root / f"data/features/{source}/{split}.parquet").set_index(schema.ID)
        return matrix.loc[frame[schema.ID]].to_numpy(np.float32)

    sets = {"catalogue": table("photometry"), "noiseless": noiseless,
            "noiseless+morphology": np.hstack([noiseless, morphology])}
    if (root / "data/features/measured+photometry/train.parquet").exists():
        sets["catalogue+measured"] = table("measured+photometry")
    return frame, sets


def ceiling_benchmark(root: Path) -> dict:
    from galaxyprop.evaluation.metrics import target_metrics
    from galaxyprop.heads import make_head

    bands = json.loads((root / "data/prepared/bands.json").read_text())["bands"]
    truth = truth_table(root)
    splits = {split: feature_sets(root, split, truth, bands) for split in ("train", "val", "test")}
    out: dict = {}
    for target, metric in TARGETS.items():
        scores = {}
        for name in splits["train"][1]:
            (train, X), (val, X_val), (test, X_test) = ((f, s[name]) for f, s in splits.values())
            head = make_head("gbt", **GBT).fit(X, train[target].to_numpy(), validation=(X_val, val[target].to_numpy()))
            metrics = target_metrics(target, test[target].to_numpy(), head.predict(X_test).value, 0.05)
            scores[name] = metrics[metric]
        base, ceiling = scores["catalogue"], scores["noiseless+morphology"]
        out[target] = {"metric": metric, "gbt": scores,
                       "ratio_to_catalogue": {k: round(v / base, 4) for k, v in scores.items()},
                       **_captured(root, target, metric, base, ceiling)}
    return out


def _captured(root: Path, target: str, metric: str, base: float, ceiling: float) -> dict:
    """The pipeline's best multimodal and catalogue-only results and the share of the available gain
    (catalogue GBT -> noiseless + true morphology GBT) the multimodal one captures over the catalogue one."""
    sys.path.append(str(root / "pipelines"))
    from galaxyprop.results import inputs_of

    from common import registered_kind

    metrics_path = root / "reports/metrics.json"
    if not metrics_path.exists():
        return {}
    results = json.loads(metrics_path.read_text())[target]
    kinds = {key: registered_kind(inputs_of(key, "image")) for key in results}
    best = {}
    for kind in ("multimodal", "catalogue"):
        keys = [k for k in results if kinds[k] == kind and inputs_of(k, "image") != "photometry_grz"]
        if keys:
            best[kind] = min(keys, key=lambda k: results[k][metric])
    if len(best) < 2:
        return {}
    multimodal, catalogue = results[best["multimodal"]][metric], results[best["catalogue"]][metric]
    available = 1 - ceiling / base
    gained = 1 - multimodal / catalogue
    return {"best_multimodal": {best["multimodal"]: multimodal}, "best_catalogue": {best["catalogue"]: catalogue},
            "multimodal_ratio": round(multimodal / catalogue, 4), "available_gain": round(available, 4),
            "captured_fraction": round(gained / available, 3) if available > 0 else None}


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else PROJECT
    sys.path.insert(0, str(root / "src"))
    print(json.dumps(ceiling_benchmark(root), indent=2))
