"""params.yaml is validated as a whole: the real file and the tiny profile pass, each bad value is one
line naming its key, from the library, the CLI and the check_params stage."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from galaxyprop.config import load_params, locate
from galaxyprop.errors import GalaxypropError
from galaxyprop.validation.project import validate_params
from galaxyprop.validation.rules import ParamsError

from conftest import PROJECT
from project_copy import tiny_profile


@pytest.fixture(scope="module")
def real() -> dict:
    """The project's params as the pipeline loads them: params.yaml, mock.yaml, sources.yaml, seeds derived."""
    return load_params(PROJECT / "params.yaml")


def edited(params: dict, dotted: str, value) -> dict:
    params = copy.deepcopy(params)
    *path, last = dotted.split(".")
    node = params
    for key in path:
        node = node[key]
    node[last] = value
    return params


def tiny(params: dict) -> dict:
    """The profile of tests/test_pipeline_integration.py."""
    params = copy.deepcopy(params)
    tiny_profile(params)
    return params


def test_the_real_params_and_the_tiny_profile_pass(real):
    validate_params(real)
    validate_params(tiny(real))
    validate_params(edited(real, "data.source", "sdss_gst"))
    validate_params(edited(real, "data.sources.desi.split", "file"))
    validate_params(edited(real, "data.sources.sdss_gst.split", "random"))
    validate_params({**real, "someone_elses_section": {"anything": [1, "x"]}})   # unknown sections pass
    assert load_params(PROJECT / "params.yaml") == real
    # the group files hold their sections; every seed not set is the global one
    assert "mock" not in yaml.safe_load((PROJECT / "params.yaml").read_text())
    assert real["mock"]["n_galaxies"] == yaml.safe_load((PROJECT / "mock.yaml").read_text())["n_galaxies"]
    assert set(real["data"]["sources"]) == set(yaml.safe_load((PROJECT / "sources.yaml").read_text()))
    assert real["split"]["seed"] == real["mock"]["seed"] == real["tuning"]["seed"] == real["seed"]


def test_group_files_and_derived_seeds(tmp_path):
    from galaxyprop.config import locate, raw_params, write_params

    params = raw_params(PROJECT / "params.yaml")
    params["seed"] = 7
    params["split"]["seed"] = 3                      # a section may keep its own
    write_params(params, tmp_path)
    loaded = load_params(tmp_path / "params.yaml")
    assert loaded["split"]["seed"] == 3 and loaded["mock"]["seed"] == loaded["calibration"]["seed"] == 7
    assert locate("mock.fields.north") == "mock.yaml: fields.north"
    assert locate("data.sources.sdss_gst.bands") == "sources.yaml: sdss_gst.bands"
    assert locate("data.source") == "params.yaml: data.source"
    # a section in two places is refused, naming both
    (tmp_path / "params.yaml").write_text((tmp_path / "params.yaml").read_text() + "mock: {n_galaxies: 5}\n")
    with pytest.raises(GalaxypropError, match="'mock' is also in .*mock.yaml: keep it in one place"):
        load_params(tmp_path / "params.yaml")


BAD = [
    ("heads.knn.n_trials", -1, "heads.knn.n_trials must be a positive integer, got -1"),
    ("heads.knn.n_trials", "abc", "heads.knn.n_trials must be a positive integer, got 'abc'"),
    ("heads.knn.n_trials", True, "heads.knn.n_trials must be a positive integer, got True"),
    ("heads.knn.n_trials", 0, "heads.knn.n_trials must be a positive integer, got 0"),
    ("split.fractions", {"train": 1.2, "val": -0.35, "test": 0.15}, "split.fractions.train must be a number in [0, 1]"),
    ("split.fractions", {"train": 0.6, "val": 0.15, "test": 0.15}, "split.fractions must sum to 1, got 0.9"),
    ("split.fractions", {"train": 0.7, "val": 0.3}, "split.fractions needs train, val and test"),
    ("split.folds", 3, "split has unknown keys ['folds']"),
    ("data.source", "mokc", "data.source must be one of data.sources ['desi', 'mock', 'rail_lsst', 'sdss_gst'], got 'mokc'"),
    ("data.sources.mock.kind", "hdf5", "mock.kind must be one of ['desi', 'catalog']"),
    ("data.sources.desi.split", "files", "desi.split must be one of ['random', 'file'], got 'files'"),
    ("data.sources.sdss_gst.split", "file", "sdss_gst.split: 'file' needs the catalogue as separate files"),
    ("data.sources.sdss_gst.paths", {"train": "a.csv"}, "sdss_gst: give the catalogue as `path`"),
    ("data.sources.sdss_gst.columns", {"id": None}, "sdss_gst.columns.redshift is missing"),
    ("registry.candidate_heads", ["knnn"], "registry.candidate_heads[0] names an unknown head 'knnn'"),
    ("registry.candidate_heads", ["knn@photmetry"], "candidate_heads[0] 'knn@photmetry': the features must be one of"),
    ("registry.candidate_heads", ["knn", "cnn@image"], "candidate_heads[1] 'cnn@image': the image head 'cnn' takes no"),
    ("registry.candidate_heads", ["knn", "rail_dnf"], "'rail_dnf' cannot be served: its answers depend on the batch"),
    ("registry.selection.metrc", "crps", "registry.selection has unknown keys ['metrc']"),
    ("registry.selection.coverage_tolerance", 1.5, "registry.selection.coverage_tolerance must be a number in (0, 1)"),
    ("targets.z.grid", {"low": 0.5, "high": 0.1, "n_bins": 200}, "targets.z.grid needs low < high"),
    ("targets.z.grid.n_bins", 1, "targets.z.grid.n_bins must be at least 2"),
    ("targets.z.metric", "sigma_mda", "targets.z.metric must be a known metric"),
    ("targets.kcorr_r01.metric", "sigma_mad", "targets.kcorr_r01.metric must be a known metric"),
    ("heads.knn.search.k", {"low": 256, "high": 4, "log": True}, "heads.knn.search.k needs low <= high"),
    ("heads.knn.search.k", {"low": 0, "high": 4, "log": True}, "heads.knn.search.k.low must be positive on a log"),
    ("heads.knn.search.k", {"low": 4.0, "high": 256}, "heads.knn.search.k.low must be an integer, got 4.0"),
    ("heads.knn.search.k", {"low": 4, "hihg": 256}, "heads.knn.search.k must be a range {low, high, log?}"),
    ("heads.knn.search.weights", [], "heads.knn.search.weights must list at least one choice"),
    ("heads.knn.search.weights", ["uniform", "distnce"], "heads.knn.search.weights[1] must be one of"),
    ("heads.mlp.fixed.patience", "ten", "heads.mlp.fixed.patience must be an integer, got 'ten'"),
    ("heads.mlp.search.max_epochs", 30, "heads.mlp.search.max_epochs is a fixed value (30): searched settings are"),
    ("heads.mlp.fixed.width", 64, "heads.mlp.search.width is both searched and in heads.mlp.fixed"),
    ("heads.gbt.fixed.max_iter", [600], "heads.gbt.fixed.max_iter must be a number, string, true/false or null"),
    ("heads.clap.objective", "crsp", "heads.clap.objective must be a known metric"),
    ("train.targets", ["z", "sfr100"], "train.targets[1] 'sfr100' is not one of"),
    ("targets.logmstar.n_trials", {"gbm": 2}, "targets.logmstar.n_trials names an unknown head 'gbm'"),
    ("targets.logmstar.features", ["measured", "measurd"],
     "targets.logmstar.features[1] 'measurd' is not a feature source"),
    ("targets.logmstar.features", ["measured", "cutout"],   # the image heads' inputs are named with the sources
     "or an image head's inputs ['cutouts', 'cutouts+photometry']"),
    ("targets.logmstar.column", 3, "targets.logmstar.column must be"),
    ("targets.logssfr.log10", "yes", "targets.logssfr.log10 must be"),
    ("targets.zzsun", {"column": "kcorrect:metallicity", "metric": "mse", "outlier_threshold": 0.1,
                       "grid": {"low": -1, "high": 1, "n_bins": 20}}, "'kcorrect:metallicity' is not one of"),
    ("registry.promotion.drift_limits", {"sfr100": {"mse": 1.0}}, "names an unknown target 'sfr100'"),
    ("spectra.heads", ["knn", "gbt"], "spectra.heads[1] 'gbt' is not one of"),
    ("spectra.features", ["image", "pixels"], "spectra.features[1] 'pixels' is not a feature source"),
    ("spectra.registry.features", ["photometry"], "'photometry' does not come from the cutouts alone"),
    ("spectra.latent.n_components", 0, "spectra.latent.n_components must be"),
    ("spectra.promotion.drift_limit", -1, "spectra.promotion.drift_limit must be"),
    ("train.feature_heads", ["knn", "cnn"], "train.feature_heads[1] 'cnn' is not one of"),
    ("train.image_heads", ["cnn", "cnn"], "train.image_heads names one twice"),
    ("heads.knnn", {"n_trials": 1, "search": {}}, "heads names an unknown head 'knnn'"),
    ("calibration.folds", 1, "calibration.folds must be at least 2, got 1"),
    ("calibration.kernel_bins", [0, -2], "calibration.kernel_bins must be a non-empty list of non-negative"),
    ("calibration.fold", 5, "calibration has unknown keys ['fold']"),
    ("drift.tests.alarm_rate", 1.5, "drift.tests.alarm_rate must be a number in (0, 1), got 1.5"),
    ("drift.reference_field", "nowhere", "drift.reference_field must be a survey field of data.source 'mock' "
                                         "(north, south), got 'nowhere'"),
    ("targets.logmstar.column", "LOGMSTR", "targets.logmstar.column names 'LOGMSTR', which the mock survey does "
                                           "not write; it has ABSMAG01_SDSS_G"),
    ("drift.tests.embedding_method", "mdd", "params.yaml: drift.tests.embedding_method: 'mdd' is not one of"),
    ("tuning.pruner.kind", "medain", "params.yaml: tuning.pruner.kind must be one of"),
    ("split.seed", "42", "split.seed must be an integer, got '42'"),
    ("mock.fields.north.fraction", 0.5, "mock.yaml: fields: the field fractions sum to 1.1"),
    ("features.default", "images", "features.default must be a feature source"),
    ("features.secondary", ["measured", "image+measured"], "features.secondary[1] 'image+measured' is a combined "
                                                            "source that features.combined does not list"),
    ("features.combined", ["measured+spectrum"], "features.combined[0] 'measured+spectrum': 'spectrum' cannot be a part"),
    ("features.combined", ["measured"], "features.combined[0]: 'measured' is not a combined feature source"),
    ("features.components", {"embeddings": 16}, "features.components.embeddings is not a feature source"),
    ("train.secondary_heads", ["gbt", "cnn"], "train.secondary_heads[1] 'cnn' is not one of"),
    ("train.image_heads", ["cnn", "knn"], "train.image_heads[1] 'knn' is not one of ['cnn', 'cnn_mm']"),
    ("registry.candidate_heads", ["cnn_mm@photometry"], "'cnn_mm@photometry': the image head 'cnn_mm' takes no"),
    ("evaluation.kept_fractions", [1.0, 0.0], "evaluation.kept_fractions must be a non-empty list of"),
    ("registry.promotion.drift_limits.z", {"sigma_mad": -1}, "registry.promotion.drift_limits.z.sigma_mad must be"),
]


@pytest.mark.parametrize(("key", "value", "message"), BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_a_bad_value_is_one_line_naming_its_key(real, key, value, message):
    with pytest.raises(ParamsError) as raised:
        validate_params(edited(real, key, value))
    text = str(raised.value)
    assert isinstance(raised.value, GalaxypropError) and "\n" not in text
    assert text.startswith(locate(key).split(": ")[0] + ": ") and message in text, text   # the file it is in


def test_a_target_column_the_catalogue_file_lacks_is_named_from_its_header(real, tmp_path):
    """check_params reads the selected source's headers: a target's column missing from the file (the
    real SDSS catalogue kcorrect ships, or a CSV of the user's) is one line naming the key and the file,
    before any stage runs; an indexed column (MODELFLUX[2]) counts as its array column."""
    params = edited(edited(real, "data.source", "sdss_gst"), "data.sources.sdss_gst.targets.logmstar", "LGM_TOT_P50")
    with pytest.raises(ParamsError) as raised:
        validate_params(params)
    assert str(raised.value).startswith("sources.yaml: sdss_gst.targets.logmstar names 'LGM_TOT_P50', which ")
    assert "gst_tests_small.fits lacks (it has " in str(raised.value) and "MODELFLUX" in str(raised.value)
    validate_params(edited(params, "data.sources.sdss_gst.targets.logmstar", {"column": "MODELFLUX[2]"}))
    csv = tmp_path / "mine.csv"
    csv.write_text("objid,z,mag_r,magerr_r\ngal1,0.1,17.0,0.02\n")
    mine = {"kind": "catalog", "path": str(csv), "columns": {"id": "objid", "redshift": "z"},
            "bands": {"r": {"response": "sdss_r0", "mag": "mag_r", "mag_err": "magerr_r"}},
            "required_bands": ["r"], "targets": {"logmstar": "mass"}}
    params = edited(edited(real, "data.source", "mine"), "data.sources.mine", mine)
    with pytest.raises(ParamsError, match=r"^sources.yaml: mine.targets.logmstar names 'mass', which .*mine.csv lacks "
                                          r"\(it has objid, z, mag_r, magerr_r\)$"):
        validate_params(params)


def test_a_missing_required_key_is_named(real):
    params = copy.deepcopy(real)
    del params["heads"]["knn"]["n_trials"]
    with pytest.raises(ParamsError, match=r"^params.yaml: heads.knn.n_trials is missing$"):
        validate_params(params)
    assert load_params(write_params(Path(__import__("tempfile").mkdtemp()), params)) == params


def write_params(folder: Path, params: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def one_error_line(result: subprocess.CompletedProcess, key: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("galaxyprop: error: params.yaml: ") and key in lines[0], lines


@pytest.mark.slow
def test_the_cli_stops_with_one_line(real, tmp_path):
    write_params(tmp_path, edited(real, "heads.knn.n_trials", -1))
    result = subprocess.run([sys.executable, "-m", "galaxyprop.cli.main", "--params", "params.yaml", "models"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    one_error_line(result, "heads.knn.n_trials must be a positive integer, got -1")
    assert not (tmp_path / "mlruns").exists()   # nothing was touched before the check


@pytest.mark.slow
def test_the_check_params_stage(real, tmp_path):
    shutil.copytree(PROJECT / "pipelines", tmp_path / "pipelines")
    write_params(tmp_path, real)
    command = [sys.executable, "pipelines/check_params.py"]
    ok = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    report = (tmp_path / "reports/params_check.json").read_text()
    assert yaml.safe_load(report) == {"valid": True, "sections": sorted(k for k in real if k != "seed")}
    # the report does not change with a value, so stages depending on it rerun only for their own params
    for changed in (edited(real, "heads.knn.n_trials", 7), {**real, "someone_elses_section": {"x": 1}}):
        write_params(tmp_path, changed)
        subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
        assert (tmp_path / "reports/params_check.json").read_text() == report

    write_params(tmp_path, edited(real, "split.fractions", {"train": 0.6, "val": 0.15, "test": 0.15}))
    failed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    one_error_line(failed, "split.fractions must sum to 1")
    # the marker is left as it was (dvc.yaml: persist), so that a failed check removes nothing
    assert (tmp_path / "reports/params_check.json").read_text() == report


def test_the_command_line_answers_help_and_version_without_loading_mlflow_torch_pandas_or_scipy():
    """`galaxyprop --help`/`--version` load the parser alone: the commands name their heavy modules
    lazily (galaxyprop.lazy), loaded when a command runs."""
    import subprocess
    import sys

    probe = ("import sys\nfrom galaxyprop.cli.main import build_parser\nparser = build_parser()\n"
             "print(parser.format_help())\n"
             "print('LOADED', sorted(m for m in ('mlflow.tracking', 'torch.nn', 'pandas.core.frame', 'scipy.stats',"
             " 'galaxyprop.registry.promotion') if type(sys.modules.get(m)).__name__ == 'module'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "promote" in out and "predict" in out and "drift" in out
    assert out.strip().splitlines()[-1] == "LOADED []"
    version = subprocess.run([sys.executable, "-m", "galaxyprop.cli.main", "--version"], capture_output=True,
                             text=True, check=True).stdout
    assert version.startswith("galaxyprop ") and version.split()[1][0].isdigit()
