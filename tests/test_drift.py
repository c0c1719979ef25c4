"""Drift detection: verdicts on synthetic galaxies with and without a known shift, the false-alarm
rate, the `galaxyprop drift` exit codes, and clear errors for bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from galaxyprop.data import schema
from galaxyprop.errors import GalaxypropError
from galaxyprop.monitoring.drift import DriftSettings, Sample, compare, false_alarm_rate
from galaxyprop.monitoring.samples import photometry_columns, to_sample

from conftest import PROJECT

BANDS = ["g", "r", "z", "W1"]
DEPTH = {"g": 24.7, "r": 24.1, "z": 23.3, "W1": 20.3}   # 5-sigma AB depths


def catalogue(n: int, seed: int, flux_scale: float = 1.0, depth_offset: float = 0.0) -> pd.DataFrame:
    """A flux-limited sample: r magnitudes from Euclidean counts up to 19.5, colours with scatter,
    inverse variances from each band's depth (a shallower survey: depth_offset < 0)."""
    rng = np.random.default_rng(seed)
    r = 19.5 - rng.exponential(0.9, n)
    mags = {"r": r, "g": r + rng.normal(0.8, 0.25, n), "z": r - rng.normal(0.6, 0.2, n)}
    mags["W1"] = mags["z"] - rng.normal(0.1, 0.3, n)
    frame = {}
    for band in BANDS:
        flux = 10 ** (-0.4 * (mags[band] - 22.5))
        sigma = 10 ** (-0.4 * (DEPTH[band] + depth_offset - 22.5)) / 5
        frame[f"flux_{band}"] = flux * flux_scale + rng.normal(0, sigma, n)
        frame[f"flux_ivar_{band}"] = np.full(n, 1 / sigma**2)
    frame["z"] = rng.gamma(4, 0.04, n)
    return pd.DataFrame(frame)


def gaussian_embeddings(n: int, seed: int, shift: float = 0.0, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, (n, dim)).astype(np.float32)


@pytest.fixture(scope="module")
def reference() -> Sample:
    return to_sample("reference", catalogue(3000, 1), BANDS, gaussian_embeddings(3000, 1), targets={})


def test_magnitude_errors_and_columns():
    frame = pd.DataFrame({"flux_g": [100.0, 10.0], "flux_ivar_g": [1.0, 0.0],
                          "flux_r": [50.0, 5.0], "flux_ivar_r": [4.0, 1.0]})
    photometry = photometry_columns(frame, ["g", "r"])
    assert list(photometry.columns) == ["mag_g", "mag_r", "g-r", "magerr_g", "magerr_r"]
    assert photometry["mag_g"].iloc[0] == pytest.approx(22.5 - 5.0)
    assert photometry["g-r"].iloc[0] == pytest.approx(-2.5 * np.log10(2))
    assert photometry["magerr_g"].iloc[0] == pytest.approx(2.5 / np.log(10) / 100)   # S/N 100
    assert photometry["magerr_r"].iloc[0] == pytest.approx(2.5 / np.log(10) / 100)   # 50 * sqrt(4)
    assert np.isnan(photometry["magerr_g"].iloc[1])                                  # ivar 0: unmeasured


@pytest.mark.slow
def test_a_sample_like_the_reference_is_not_flagged(reference):
    like = to_sample("like", catalogue(800, 2), BANDS, gaussian_embeddings(800, 2), targets={})
    verdict = compare(reference, like, DriftSettings()).verdict
    assert verdict["detected"] is False
    assert verdict["share_drifted"] == 0 and verdict["drifted_columns"] == []
    assert 0.45 < verdict["embedding_drift_score"] < 0.55 and verdict["embedding_detected"] is False
    # Bonferroni over 11 columns with half the alarm rate (the bootstrap test on the embeddings has the rest)
    assert verdict["settings"]["column_threshold"] == pytest.approx(0.05 / 2 / 11)


@pytest.mark.slow
def test_known_shifts_are_flagged_on_the_columns_they_move(reference):
    brighter = compare(reference, to_sample("bright", catalogue(800, 3, flux_scale=1.25), BANDS, targets={}),
                       DriftSettings()).verdict                    # a zero-point error of 0.24 mag
    assert brighter["detected"] and brighter["photometry_detected"]
    assert {"mag_g", "mag_r", "mag_z", "mag_W1"} <= set(brighter["drifted_columns"])
    assert not {"g-r", "r-z", "z-W1"} & set(brighter["drifted_columns"])   # a grey shift keeps the colours
    assert "embedding_drift_score" not in brighter                         # no embeddings on that side

    shallower = compare(reference, to_sample("shallow", catalogue(800, 4, depth_offset=-0.7), BANDS, targets={}),
                        DriftSettings()).verdict
    assert {"magerr_g", "magerr_r", "magerr_z", "magerr_W1"} <= set(shallower["drifted_columns"])
    assert shallower["share_drifted"] == pytest.approx(len(shallower["drifted_columns"]) / 11)

    shifted = Sample("shifted", embeddings=gaussian_embeddings(800, 5, shift=0.3))
    images = compare(Sample("reference", embeddings=reference.embeddings), shifted, DriftSettings()).verdict
    assert images["detected"] and images["embedding_detected"] and images["embedding_drift_score"] > 0.75


def test_prediction_drift_and_metrics_where_labels_exist(reference):
    rng = np.random.default_rng(6)
    ref = Sample("ref", predictions=pd.DataFrame({"z": rng.gamma(4, 0.04, 2000)}),
                 labels=pd.DataFrame({"z": rng.gamma(4, 0.04, 2000)}))
    truth = rng.gamma(4, 0.04, 600)
    cur = Sample("cur", predictions=pd.DataFrame({"z": truth + 0.05}), labels=pd.DataFrame({"z": truth}))

    def metrics_of(target, y_true, y_pred):
        return {"bias": float(np.mean(y_pred - y_true))}

    verdict = compare(ref, cur, DriftSettings(), metrics_of=metrics_of).verdict
    assert verdict["prediction_drift"]["z"]["detected"] and verdict["detected"]
    assert verdict["metrics"]["z"]["bias"]["current"] == pytest.approx(0.05)


@pytest.mark.slow
def test_false_alarm_rate_of_samples_from_one_population():
    pool = to_sample("pool", catalogue(4000, 7), BANDS, gaussian_embeddings(4000, 7), targets={})
    control = false_alarm_rate(pool, 2500, 600, 20, DriftSettings(), seed=3)
    assert control["n_splits"] == 20 and control["false_alarm_rate"] <= 0.1   # designed for 5 %
    assert control["embedding_drift_score_max"] < 0.55
    with pytest.raises(GalaxypropError, match="fewer than 3500 \\+ 600"):
        false_alarm_rate(pool, 3500, 600, 2, DriftSettings())


def test_bad_inputs_give_one_clear_error(reference):
    mismatched = to_sample("other", catalogue(100, 8), ["g", "r", "z"], targets={})
    with pytest.raises(GalaxypropError, match=r"photometry columns differ: 'other' lacks \['mag_W1'"):
        compare(reference, mismatched, DriftSettings())
    empty = to_sample("empty", catalogue(0, 9), BANDS, targets={})
    with pytest.raises(GalaxypropError, match="sample 'empty' has 0 rows"):
        compare(reference, empty, DriftSettings())
    narrow = Sample("narrow", embeddings=gaussian_embeddings(50, 1, dim=8))
    with pytest.raises(GalaxypropError, match="16 dimensions, those of 'narrow' 8"):
        compare(Sample("reference", embeddings=reference.embeddings), narrow, DriftSettings())
    with pytest.raises(GalaxypropError, match="column_threshold must be set for the distance test 'wasserstein'"):
        DriftSettings.from_params({"column_method": "wasserstein"})
    with pytest.raises(GalaxypropError, match="unknown keys \\['alpha'\\]"):
        DriftSettings.from_params({"alpha": 0.1})


def drift_cli(tmp_path, capsys, current, *extra) -> tuple[int, str, str]:
    from galaxyprop.cli.main import main

    reference = tmp_path / "reference.parquet"
    if not reference.exists():
        catalogue(3000, 1).to_parquet(reference)
    with pytest.raises(SystemExit) as exited:
        main(["--params", str(PROJECT / "params.yaml"), "drift", "--reference", str(reference), "--current",
              str(current), "--model", "none", "--bands", ",".join(BANDS), "--out", str(tmp_path / "out"), *extra])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def test_drift_cli_exit_codes_report_and_errors(tmp_path, capsys):
    like, shifted = tmp_path / "like.csv", tmp_path / "brighter.fits"
    catalogue(800, 2).rename(columns=str.upper).to_csv(like, index=False)       # FLUX_G...: any case
    from astropy.table import Table

    Table.from_pandas(catalogue(800, 3, flux_scale=1.25)).write(shifted)

    code, out, _ = drift_cli(tmp_path, capsys, like)
    assert code == 0 and "reference_vs_like: no drift" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary) == ["reference_vs_like"] and summary["reference_vs_like"]["detected"] is False
    assert (tmp_path / "out" / "reference_vs_like.html").stat().st_size > 100_000

    code, out, _ = drift_cli(tmp_path, capsys, shifted)
    assert code == 3 and "reference_vs_brighter: DRIFT DETECTED" in out and "mag_r" in out

    broken = tmp_path / "broken.parquet"
    catalogue(50, 4).drop(columns=["flux_ivar_z"]).to_parquet(broken)
    code, _, err = drift_cli(tmp_path, capsys, broken)
    assert code == 2 and err.strip().splitlines() == [
        f"galaxyprop: error: {broken}: lacks column(s) ['flux_ivar_z'] that drift's photometry needs; it has "
        "['flux_g', 'flux_ivar_g', 'flux_r', 'flux_ivar_r', 'flux_z', 'flux_W1', 'flux_ivar_W1', 'z']"]

    empty = tmp_path / "empty.parquet"
    catalogue(0, 5).to_parquet(empty)
    code, _, err = drift_cli(tmp_path, capsys, empty)
    assert code == 2 and err.strip() == f"galaxyprop: error: {empty}: no rows to compare"
    code, _, err = drift_cli(tmp_path, capsys, tmp_path / "missing.parquet")
    assert code == 2 and "missing.parquet: file not found" in err


def test_a_band_never_measured_is_named(reference):
    frame = catalogue(100, 10)
    frame["flux_ivar_W1"] = 0.0
    with pytest.raises(GalaxypropError, match="photometry of 'unmeasured': column 'magerr_W1' has infinite values or "
                                              "no measured value"):
        compare(reference, to_sample("unmeasured", frame, BANDS, targets={}), DriftSettings())


@pytest.mark.slow
def test_two_runs_of_one_comparison_write_the_same_html(tmp_path):
    """Evidently names its widgets with new time-based UUIDs on every run; the saved report renumbers
    them, so the drift stage's HTML outputs keep their DVC hash when nothing changed."""
    from galaxyprop.monitoring.drift import stable_ids

    ref = to_sample("ref", catalogue(300, 5), BANDS, targets={})
    cur = to_sample("cur", catalogue(200, 6, flux_scale=1.2), BANDS, targets={})
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    compare(ref, cur, DriftSettings()).save_html(first)
    compare(ref, cur, DriftSettings()).save_html(second)
    assert first.read_bytes() == second.read_bytes() and first.stat().st_size > 100_000
    # the renumbering keeps links: one id everywhere it appears, distinct ids distinct, other text as it was
    html = (b'<a id="01a2347c-f533-7bb3-8874-25f6b09e973d"> var metric_947c1e547a1a44baa158bf99f83b7bf4 '
            b'href="#01a2347c-f533-7bb3-8874-25f6b09e973d" "01a2347c-f1d1-730c-b533-508169cc4fcd" 0123abcd')
    assert stable_ids(html) == (b'<a id="00000000-0000-7000-8000-000000000000"> var metric_00000000000000000000000000000001 '
                                b'href="#00000000-0000-7000-8000-000000000000" "00000002-0000-7000-8000-000000000002" 0123abcd')


def test_drift_reads_a_users_ids_as_predict_does(tmp_path):
    """A repeated id, or integers mixed with names, are refused in one line naming the file; good
    integer ids come back as int64, as predict reads them."""
    from galaxyprop.monitoring.samples import read_batch

    rng = np.random.default_rng(0)
    table = pd.DataFrame({f"{kind}_{b}": rng.uniform(1, 10, 6) for b in "gr" for kind in ("flux", "flux_ivar")})
    table.assign(TARGETID=[str(100 + i) for i in range(6)]).to_csv(tmp_path / "good.csv", index=False)
    assert read_batch(tmp_path / "good.csv", ["g", "r"], targets={}).frame[schema.ID].dtype == np.int64
    table.assign(TARGETID=["a", "b", "c", "a", "d", "e"]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(GalaxypropError, match=r"dup.csv: id 'a' is repeated \(row 3; 1 repeated ids\)"):
        read_batch(tmp_path / "dup.csv", ["g", "r"], targets={})
    table.assign(TARGETID=["1", "2", "x", "4", "5", "6"]).to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(GalaxypropError, match=r"mixed.csv: ids mix integers \(row 0: 1\) and names \(row 2: 'x'"):
        read_batch(tmp_path / "mixed.csv", ["g", "r"], targets={})


def test_drift_says_which_rows_of_a_users_file_it_left_out_and_why(tmp_path):
    """Through a column map, rows with an unusable required band are left out, counted by reason, and the
    command says so (the probe saw 'current 100' of 200 with no reason)."""
    from galaxyprop.data.catalog import CatalogSpec
    from galaxyprop.monitoring.samples import read_batch

    rng = np.random.default_rng(1)
    table = pd.DataFrame({"mag_g": rng.uniform(18, 21, 200), "mag_r": rng.uniform(17, 20, 200),
                          "err_g": 0.05, "err_r": 0.05, "zspec": rng.uniform(0, 0.3, 200)})
    table.loc[:99, "mag_r"] = -99.0
    table.to_csv(tmp_path / "mine.csv", index=False)
    spec = CatalogSpec.from_params({"columns": {"redshift": "zspec"},
                                    "bands": {b: {"mag": f"mag_{b}", "mag_err": f"err_{b}"} for b in "gr"}})
    batch = read_batch(tmp_path / "mine.csv", ["g", "r"], column_map=spec, targets={})
    assert len(batch.frame) == 100
    assert batch.describe_dropped() == (f"{tmp_path / 'mine.csv'}: 100 of 200 rows used, 100 left out "
                                        "(r flux unusable: non-finite or non-positive (mag_r): 100)")
