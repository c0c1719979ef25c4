"""The data.source switch: each source imports into data/raw and reads into the same layout."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from galaxyprop.data import schema
from galaxyprop.data.sources import import_source, load_source
from galaxyprop.errors import GalaxypropError


def data_params(params: dict, source: str, **changes) -> dict:
    data = copy.deepcopy(params["data"])
    data.update(source=source, **changes)
    return data


@pytest.mark.slow
def test_sdss_catalogue_source_stays_available(params, tmp_path):
    data = data_params(params, "sdss_gst", max_rows=300)
    files = import_source(data, None, tmp_path / "raw")
    assert [f.name for f in files] == ["catalog.fits"]
    loaded = load_source(data, tmp_path / "raw")
    assert loaded.bands == ["u", "g", "r", "i", "z"] and loaded.label_band == "r"
    assert loaded.responses["r"] == {"*": "sdss_r0"}
    k = loaded.frame["kcorr_r01"].to_numpy()
    assert len(k) > 250 and np.all(np.isfinite(k)) and -0.4 < np.median(k) < 0.2


@pytest.mark.slow
def test_mock_source_is_simulated_and_read(params, tmp_path):
    mock = copy.deepcopy(params["mock"])
    mock.update(n_galaxies=25, n_jobs=1)
    mock["imaging"]["stamp_size"] = 16
    data = data_params(params, "mock", z_max=None)
    import_source(data, mock, tmp_path / "raw", progress=False)
    loaded = load_source(data, tmp_path / "raw")
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
