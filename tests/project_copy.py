"""A clean copy of the project in a new git repository: what the integration test and the benchmarks run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
_GENERATED = ("data/", "models/", "reports/", "dvc.lock")


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run `cmd` with this interpreter's environment first on PATH and no store overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "OPTUNA_", "GALAXYPROP_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def copy_project(root: Path) -> Path:
    """Copy the tracked and new source files (no generated data, models, reports or lock) and commit them."""
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], PROJECT).stdout.split()
    for name in files:
        if (PROJECT / name).is_file() and not name.startswith(_GENERATED):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, root / name)
    git = ["git", "-c", "user.name=galaxyprop", "-c", "user.email=dev@localhost"]
    run(["git", "init", "-q"], root)
    run(git + ["add", "-A"], root)
    run(git + ["commit", "-qm", "copy"], root)
    return root


def edit_params(root: Path, edit) -> None:
    """Apply `edit(params)` to the project's params (params.yaml and its group files, as written)."""
    from galaxyprop.config import raw_params, write_params

    params = raw_params(root / "params.yaml")
    edit(params)
    write_params(params, root)


def params_texts(root: Path) -> dict[str, str]:
    """The params files' text, to restore after a temporary edit."""
    from galaxyprop.config import GROUP_FILES

    return {name: (root / name).read_text() for name in ("params.yaml", *GROUP_FILES.values())}


def set_hyperparameters(params: dict, head: str, **values) -> None:
    """Set a head's hyperparameters: a list or range is searched (heads.<head>.search), anything else
    fixed (heads.<head>.fixed), and removed from the other."""
    spec = params["heads"][head]
    for name, value in values.items():
        searched = isinstance(value, (list, dict))
        spec.setdefault("fixed", {}).pop(name, None) if searched else spec["search"].pop(name, None)
        (spec["search"] if searched else spec.setdefault("fixed", {}))[name] = value


NEW_TARGET = "kcorr_g01"
TINY_TARGETS = ("z", "kcorr_r01", NEW_TARGET)


def tiny_profile(params: dict) -> None:
    """The tiny profile the integration test and tools/layout_equivalence.py run: minutes on 2 cores."""
    params["mock"]["n_galaxies"] = 800
    # ~600 galaxies: field x brightness cells of a few galaxies each would leave the ~90-galaxy test split's
    # composition to rounding; the tiny profile splits in redshift alone (the strata are tested on their own)
    params["split"].update(by_field=False, n_brightness_bins=1)
    params["mock"]["imaging"]["stamp_size"] = 24
    params["data"]["max_rows"] = 700
    params["heads"]["knn"]["n_trials"] = 3
    params["heads"]["gbt"]["n_trials"] = 2
    set_hyperparameters(params, "gbt", max_iter=60)
    params["heads"]["mlp"]["n_trials"] = 2
    set_hyperparameters(params, "mlp", max_epochs=4, width=[32])
    set_hyperparameters(params, "cnn", channels=[8], crop=16, max_shift=2, width=[16], max_epochs=2)
    params["heads"]["cnn"]["n_trials"] = 1
    params["train"]["image_heads"] = ["cnn", "cnn_mm"]     # the image heads and knn on the secondary sources too
    params["train"]["secondary_heads"] = ["knn", "gbt"]    # and the embeddings among the secondary sources
    params["features"]["secondary"] = ["image", "photometry_grz", "measured"]   # (all left out of the default run)
    set_hyperparameters(params, "cnn_mm", channels=[8], crop=16, max_shift=2, width=[16], photometry_width=16,
                        max_epochs=2)
    params["heads"]["clap"]["n_trials"] = 1
    set_hyperparameters(params, "clap", latent_dim=[8], k_max=[64], n_calibration=50, refit_width=[32], max_epochs=3,
                        n_realisations=2)
    params["baselines"]["kcorrect_specz"]["n_mc"] = 2
    params["baselines"]["kcorrect_photoz"]["n_mc"] = 2
    params["encoder"]["model"].update(embedding_dim=16, image_widths=[8, 16], spectrum_widths=[8, 8, 16],
                                      crop=20, max_shift=2, logit_scale=5.0)
    params["encoder"]["training"].update(max_epochs=3, batch_size=32)
    params["drift"]["control_splits"] = 3
    params["adaptation"]["mlp"].update(width=32, max_epochs=5, n_mc=5)    # the stage runs; its science: test_adaptation
    params["calibration"]["min_calibration_rows"] = 60     # about 100 validation galaxies
    # A target defined here alone (params.yaml does not name it): K(^{0.1}g) from FastSpecFit's column, in
    # place of the default property targets; every stage takes it as it takes kcorr_r01.
    params["targets"][NEW_TARGET] = {"column": "KCORR01_SDSS_G", "metric": "mse", "outlier_threshold": 0.05,
                                     "grid": {"low": -0.6, "high": 1.6, "n_bins": 110}, "n_trials": {"knn": 2},
                                     "features": ["photometry", "measured+photometry", "cutouts"]}
    # its heads skip the other sources, and cnn_mm its cutouts+photometry (the cnn is its images model)
    params["train"]["targets"] = list(TINY_TARGETS)
    params["targets"]["kcorr_r01"].pop("features", None)   # every head on every source (the default run skips cnn_mm)
    # The tiny models are far from the real drift limits; the gate's refusal is tested with strict ones.
    params["registry"]["promotion"]["drift_limits"] = {"z": {"sigma_mad": 1.0}, "kcorr_r01": {"mse": 1.0}}
