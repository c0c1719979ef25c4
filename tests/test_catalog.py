"""The column-map catalogue reader: units, array columns, magnitudes, bad rows, bad files."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from galaxyprop.data import schema
from galaxyprop.data.catalog import CatalogSpec, read_catalog
from galaxyprop.errors import GalaxypropError

from conftest import gst_path, sdss_data, write_gst_like


def spec_of(params: dict, **changes) -> CatalogSpec:
    data = {**sdss_data(params), **changes}
    return CatalogSpec.from_params(data)


def test_fluxes_follow_the_column_map(params, small_catalog):
    frame, report = read_catalog(small_catalog, spec_of(params, z_max=None))
    raw = fits.getdata(gst_path())[:200]
    keep = frame[schema.ID].to_numpy()
    # SDSS r: nanomaggies, AB offset +0.010 mag, dereddened by EXTINCTION[2].
    expected_r = raw["MODELFLUX"][keep, 2] * 10 ** (-0.4 * 0.010) * 10 ** (0.4 * raw["EXTINCTION"][keep, 2])
    np.testing.assert_allclose(frame["flux_r"], expected_r, rtol=1e-6)
    scale = 10 ** (-0.4 * 0.010) * 10 ** (0.4 * raw["EXTINCTION"][keep, 2])
    np.testing.assert_allclose(frame["flux_ivar_r"], raw["MODELFLUX_IVAR"][keep, 2] / scale**2, rtol=1e-5)
    # 2MASS J: Vega magnitude -> AB (+0.902) -> nanomaggies, dereddened by 0.328 A_r.
    j = raw["J_M_EXT"][keep] + 0.902 - 0.328 * raw["EXTINCTION"][keep, 2]
    np.testing.assert_allclose(frame["flux_J"], 10 ** (-0.4 * (j - 22.5)), rtol=1e-5)
    sigma_j = frame["flux_J"] * raw["J_MSIG_EXT"][keep] * np.log(10) / 2.5
    np.testing.assert_allclose(frame["flux_ivar_J"], 1 / sigma_j**2, rtol=1e-4)
    # GALEX: counts/s with zero point 20.08; no detection (0) means not measured, not dropped.
    nuv = raw["NUV_FLUX_AUTO"][keep]
    assert (frame["flux_ivar_NUV"][nuv <= 0] == 0).all()
    detected = nuv > 0
    mag = 20.08 - 2.5 * np.log10(nuv[detected]) - 2.973 * raw["EXTINCTION"][keep, 2][detected]
    np.testing.assert_allclose(frame["flux_NUV"][detected], 10 ** (-0.4 * (mag - 22.5)), rtol=1e-5)
    assert report.n_kept == len(frame)


def test_bad_rows_are_dropped_and_counted(params, tmp_path):
    def inject(data):
        data["MODELFLUX"][0, 2] = np.nan  # r flux non-finite
        data["MODELFLUX"][1, 0] = -3.0  # u flux negative
        data["Z"][2] = -0.1  # negative redshift
        data["Z"][3] = np.nan  # missing redshift
        data["Z"][4] = 0.5  # beyond z_max
        data["J_M_EXT"][5] = np.nan  # optional band: kept, marked unmeasured

    path = write_gst_like(tmp_path / "bad.fits", slice(0, 50), inject)
    frame, report = read_catalog(path, spec_of(params))
    assert report.n_input == 50
    assert report.n_dropped == 5 == sum(report.dropped.values())
    assert report.dropped["redshift missing or negative (Z)"] == 2
    assert report.dropped["redshift outside [0.0, 0.37]"] == 1
    assert report.dropped["r flux unusable: non-finite or non-positive (MODELFLUX[2])"] == 1
    assert report.dropped["u flux unusable: non-finite or non-positive (MODELFLUX[0])"] == 1
    assert 5 in set(frame[schema.ID]) and frame.loc[frame[schema.ID] == 5, "flux_ivar_J"].item() == 0
    assert not {0, 1, 2, 3, 4} & set(frame[schema.ID])
    assert "dropped 5" in report.summary()


def test_csv_and_parquet_read_like_fits(tmp_path):
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"objid": np.arange(30) + 1000, "zspec": rng.uniform(0.05, 0.3, 30),
                          "mag_r": rng.uniform(15, 18, 30), "err_r": np.full(30, 0.02),
                          "f_g": rng.uniform(50, 500, 30), "ivar_g": np.full(30, 4.0)})
    data = {"columns": {"id": "objid", "redshift": "zspec"},
            "bands": {"r": {"mag": "mag_r", "mag_err": "err_r"},
                      "g": {"flux": "f_g", "flux_ivar": "ivar_g"}}}
    spec = CatalogSpec.from_params(data)
    table.to_csv(tmp_path / "cat.csv", index=False)
    table.to_parquet(tmp_path / "cat.parquet")
    from_csv, _ = read_catalog(tmp_path / "cat.csv", spec)
    from_parquet, _ = read_catalog(tmp_path / "cat.parquet", spec)
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    np.testing.assert_allclose(from_csv["flux_r"], 10 ** (-0.4 * (table["mag_r"] - 22.5)))
    assert list(from_csv[schema.ID]) == list(table["objid"])


@pytest.mark.parametrize("change, message", [
    ({"columns": {"redshift": "ZSPEC"}}, "column 'ZSPEC' (redshift) not found"),
    ({"bands": {"r": {"flux": "MODELFLUX", "flux_ivar": "MODELFLUX_IVAR[2]"}}},
     "'MODELFLUX' (band r flux) is an array column"),
    ({"bands": {"r": {"flux": "MODELFLUX[7]", "flux_ivar": "MODELFLUX_IVAR[2]"}}}, "cannot be indexed"),
    ({"bands": {"r": {"flux": "MODELFLUX[2]"}}}, "give either flux with flux_ivar"),
])
def test_bad_column_maps_name_the_column(params, small_catalog, change, message):
    data = {**sdss_data(params), **change}
    if "bands" in change:
        data["required_bands"] = list(change["bands"])
    with pytest.raises(GalaxypropError, match=re.escape(message)):
        read_catalog(small_catalog, CatalogSpec.from_params(data))


def test_bad_files(params, tmp_path):
    spec = spec_of(params)
    with pytest.raises(GalaxypropError, match="catalogue file not found"):
        read_catalog(tmp_path / "missing.fits", spec)
    (tmp_path / "junk.fits").write_text("not a fits file")
    with pytest.raises(GalaxypropError, match="cannot read catalogue"):
        read_catalog(tmp_path / "junk.fits", spec)
    pd.DataFrame({"Z": ["a", "b"]}).to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(GalaxypropError, match="'Z' .* has type object, expected numbers"):
        read_catalog(tmp_path / "text.csv", CatalogSpec.from_params({"columns": {"redshift": "Z"}, "bands": {}}))


def test_empty_after_cleaning_is_an_error(params, tmp_path):
    path = write_gst_like(tmp_path / "far.fits", slice(0, 20), lambda d: d["Z"].__setitem__(slice(None), 0.9))
    with pytest.raises(GalaxypropError, match="no usable rows after cleaning"):
        read_catalog(path, spec_of(params))


def test_max_rows_is_a_seeded_subset(params):
    a, report = read_catalog(gst_path(), spec_of(params), max_rows=300, seed=3)
    b, _ = read_catalog(gst_path(), spec_of(params), max_rows=300, seed=3)
    assert report.n_input == 300
    pd.testing.assert_frame_equal(a, b)
