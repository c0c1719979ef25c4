"""The data.source switch: each source imports into data/raw and reads into the same layout."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from galaxyprop.data import schema
from galaxyprop.data.importing import import_source
from galaxyprop.data.sources import load_source, resolve_path
from galaxyprop.errors import GalaxypropError


def loaded_source(params: dict, data: dict, raw):
    """The source read as the prepare stage reads it: params targets, train.targets wanted."""
    return load_source(data, raw, params["targets"], params["train"]["targets"])


def data_params(params: dict, source: str, **changes) -> dict:
    data = copy.deepcopy(params["data"])
    data.update(source=source, **changes)
    return data


@pytest.mark.slow
def test_sdss_catalogue_source_stays_available(params, tmp_path):
    data = data_params(params, "sdss_gst", max_rows=300)
    files = import_source(data, None, tmp_path / "raw")
    assert [f.name for f in files] == ["catalog.fits"]
    loaded = loaded_source(params, data, tmp_path / "raw")
    assert loaded.bands == ["u", "g", "r", "i", "z"] and loaded.label_band == "r"
    assert loaded.responses["r"] == {"*": "sdss_r0"}
    k = loaded.frame["kcorr_r01"].to_numpy()
    assert len(k) > 250 and np.all(np.isfinite(k)) and -0.4 < np.median(k) < 0.2
    # logmstar from the same kcorrect fit (sources.yaml: kcorrect:logmstar); zzsun has no column here
    assert loaded.targets == ["z", "kcorr_r01", "logmstar"]
    mass = loaded.frame["logmstar"].to_numpy()
    assert np.all(np.isfinite(mass)) and 9.5 < np.median(mass) < 11.0   # SDSS main sample, h = 1


@pytest.mark.slow
def test_a_catalogue_column_is_a_target(params, tmp_path):
    """A target named by a column of the file (with log10 and subtract), kept where it is finite."""
    from astropy.table import Table

    table = Table.read(resolve_path("kcorrect:data/test/gst_tests_small.fits"))[:200]
    rng = np.random.default_rng(1)
    table["SFR_X"] = 10 ** rng.normal(0.0, 0.5, len(table))
    table["MASS_X"] = rng.normal(10.0, 0.5, len(table))
    table["SFR_X"][3] = -1.0                       # log10 of it is not finite: the row is dropped
    table.write(tmp_path / "cat.fits")
    data = data_params(params, "sdss_gst")
    spec = copy.deepcopy(data["sources"]["sdss_gst"])
    spec.update(path=str(tmp_path / "cat.fits"), targets={"logssfr": {"column": "SFR_X", "log10": True,
                                                                      "subtract": "MASS_X"}})
    data["sources"]["sdss_gst"] = spec
    import_source(data, None, tmp_path / "raw")
    loaded = load_source(data, tmp_path / "raw", params["targets"], ["z", "logssfr"])
    assert loaded.targets == ["z", "logssfr"] and "kcorr_r01" not in loaded.frame
    assert loaded.report.dropped["target logssfr (log10(SFR_X) - MASS_X) missing or not finite"] == 1
    rows = loaded.frame[schema.ID].to_numpy()    # no id column: the row number
    assert 3 not in rows and len(rows) > 150
    np.testing.assert_allclose(loaded.frame["logssfr"], np.log10(table["SFR_X"][rows]) - table["MASS_X"][rows])


@pytest.mark.slow
def test_mock_source_is_simulated_and_read(params, tmp_path):
    mock = copy.deepcopy(params["mock"])
    mock.update(n_galaxies=25, n_jobs=1)
    mock["imaging"]["stamp_size"] = 16
    data = data_params(params, "mock", z_max=None)
    import_source(data, mock, tmp_path / "raw", progress=False)
    loaded = loaded_source(params, data, tmp_path / "raw")
    assert len(loaded.frame) == 25 and loaded.bands == ["g", "r", "z", "W1"]
    assert loaded.responses["z"] == {"S": "decam_z", "N": "mzls_z"}
    assert set(loaded.frame[schema.PHOTSYS]) <= {"N", "S"}


def test_unknown_source_and_missing_files_are_one_line_errors(params, tmp_path):
    with pytest.raises(GalaxypropError, match=r"data.source = 'nope' is not one of data.sources"):
        import_source(data_params(params, "nope"), None, tmp_path / "raw")
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "earlier.h5").write_text("an earlier import")
    with pytest.raises(GalaxypropError, match=r"data.sources.desi.images: /path/to/astroclip_desi.1.1.5.h5 not found"):
        import_source(data_params(params, "desi"), None, tmp_path / "raw")
    assert (tmp_path / "raw" / "earlier.h5").exists()          # checked before the old import is replaced
