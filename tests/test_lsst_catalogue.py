"""LSST catalogues as RAIL writes them: `mag_<band>_lsst`, `mag_err_<band>_lsst`, `redshift`, non-detections as
magnitude 99 with the 1-sigma limit in the error column. Read by a column map alone, LSST's filter curves
from speclite (kcorrect has none), non-detections kept at their limit and counted."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from galaxyprop.data.catalog import CatalogSpec, read_catalog
from galaxyprop.errors import GalaxypropError
from galaxyprop.physics.filters import load_filter
from galaxyprop.physics.kcorrect_fit import fit_kcorrection, kcorrect_model
from galaxyprop.physics.magnitudes import flux_to_mag

BANDS = "ugrizy"
RESPONSES = tuple(f"speclite:lsst2023-{b}" for b in BANDS)
LIMITS = {"u": 26.1, "g": 27.4, "r": 27.5, "i": 26.8, "z": 26.1, "y": 24.9}   # 1-sigma, 10-year-like depths


@functools.cache
def galaxies(n: int = 300, seed: int = 0):
    """Random mixtures of kcorrect's templates through speclite's LSST curves: redshifts, AB fluxes
    (nanomaggies) and the coefficients."""
    rng = np.random.default_rng(seed)
    model = kcorrect_model(RESPONSES, "sdss_r0", "speclite:lsst2023-r", 1.0)
    z = rng.uniform(0.05, 0.9, n).astype(np.float32)
    coeffs = rng.uniform(0, 1, (n, 5)) * (rng.uniform(size=(n, 5)) < 0.6)
    coeffs[np.arange(n), rng.integers(0, 5, n)] += 0.5
    r_mag = rng.uniform(20.0, 25.0, n)
    coeffs *= (10 ** (-0.4 * r_mag) / model.reconstruct(redshift=z, coeffs=coeffs)[:, 2])[:, None]
    return z, 1e9 * model.reconstruct(redshift=z, coeffs=coeffs), coeffs


def rail_table(path, undetected_u: int = 30, undetected_y: int = 10, all_99: str | None = None) -> pd.DataFrame:
    """The galaxies as RAIL's table: the first `undetected_u` u magnitudes 99 with the 1-sigma limit in the
    error column; `undetected_y` y magnitudes NaN (their limit only in the column map); `all_99`: a band
    never detected."""
    z, flux, _ = galaxies()
    mags = flux_to_mag(flux)
    table = pd.DataFrame({"object_id": [f"obj{i:04d}" for i in range(len(z))], "redshift": z})
    for k, band in enumerate(BANDS):
        table[f"mag_{band}_lsst"] = mags[:, k]
        table[f"mag_err_{band}_lsst"] = 0.02 + 0.01 * (np.arange(len(z)) % 3)
    table.loc[: undetected_u - 1, "mag_u_lsst"] = 99.0
    table.loc[: undetected_u - 1, "mag_err_u_lsst"] = LIMITS["u"]
    table.loc[len(z) - undetected_y:, "mag_y_lsst"] = np.nan
    if all_99:
        table[f"mag_{all_99}_lsst"] = 99.0
        table[f"mag_err_{all_99}_lsst"] = LIMITS[all_99]
    table.to_parquet(path)
    return table


def column_map(path, required=tuple(BANDS)) -> CatalogSpec:
    """A `kind: catalog` source for RAIL's names: nothing but a column map."""
    return CatalogSpec.from_params({
        "path": str(path), "columns": {"id": "object_id", "redshift": "redshift"},
        "bands": {b: {"response": f"speclite:lsst2023-{b}", "mag": f"mag_{b}_lsst", "mag_err": f"mag_err_{b}_lsst",
                      "limit": LIMITS[b]} for b in BANDS},
        "required_bands": list(required), "z_max": 3.0})


@pytest.mark.slow
def test_speclite_lsst_curves_are_what_kcorrect_fits_with():
    """kcorrect's fit through speclite's LSST curves recovers the K-corrections of noiseless template
    galaxies (the model's own K for the true coefficients), and the curves' pivot wavelengths are LSST's."""
    pivots = [load_filter(r).pivot_wavelength for r in RESPONSES]
    np.testing.assert_allclose(pivots, [3694, 4800, 6215, 7545, 8680, 9725], rtol=0.01)
    z, flux, coeffs = galaxies()
    model = kcorrect_model(RESPONSES, "sdss_r0", "speclite:lsst2023-r", 1.0)   # the fit's own (cached)
    fitted = fit_kcorrection(flux, 1.0 / (0.01 * flux) ** 2, z, RESPONSES, "sdss_r0", "speclite:lsst2023-r", 0.1)
    truth = model.kcorrect(redshift=z, coeffs=coeffs, band_shift=0.1)[:, 0]
    assert fitted.ok.all()
    np.testing.assert_allclose(fitted.kcorrection, truth, atol=0.01)
    with pytest.raises(GalaxypropError, match="unknown filter response 'speclite:lsst2099-u'"):
        load_filter("speclite:lsst2099-u")


@pytest.mark.slow
def test_a_rail_catalogue_reads_by_its_column_map_with_non_detections_kept_at_their_limit(tmp_path):
    table = rail_table(tmp_path / "lsst.parquet")
    frame, report = read_catalog(tmp_path / "lsst.parquet", column_map(tmp_path / "lsst.parquet"))
    assert len(frame) == len(table) and report.n_dropped == 0
    assert frame["id"].tolist() == table["object_id"].tolist()
    assert dict(report.nondetections) == {"u": 30, "y": 10}
    assert "non-detections kept at their 1-sigma limit: u 30, y 10" in report.summary()
    # a non-detection is a measurement of signal-to-noise 1 at the limit: flux there, error = flux
    for band, rows in (("u", slice(0, 30)), ("y", slice(len(table) - 10, None))):
        flux, ivar = frame[f"flux_{band}"].to_numpy()[rows], frame[f"flux_ivar_{band}"].to_numpy()[rows]
        np.testing.assert_allclose(flux, 10 ** (-0.4 * (LIMITS[band] - 22.5)))
        np.testing.assert_allclose(flux * np.sqrt(ivar), 1.0)
    # detections as they were: the u magnitude back from the flux
    np.testing.assert_allclose(flux_to_mag(frame["flux_u"].to_numpy()[30:]), table["mag_u_lsst"].to_numpy()[30:],
                               atol=1e-9)


def test_a_band_never_detected_is_left_out_or_refused_when_required(tmp_path):
    path = tmp_path / "lsst.parquet"
    rail_table(path, all_99="y")
    frame, report = read_catalog(path, column_map(path, required=tuple("ugriz")))
    assert report.empty_bands == ["y"] and (frame["flux_ivar_y"] == 0).all() and len(frame) == 300
    with pytest.raises(GalaxypropError, match=r"lsst.parquet: required band 'y' \(mag_y_lsst\) has no detection"):
        read_catalog(path, column_map(path))
    # without a known limit, a 99 is unusable: the rows are dropped and counted, as before
    plain = CatalogSpec.from_params({"columns": {"id": "object_id", "redshift": "redshift"},
                                     "bands": {b: {"mag": f"mag_{b}_lsst", "mag_err": f"mag_err_{b}_lsst"}
                                               for b in "griz"}, "z_max": 3.0})
    rail_table(path, undetected_u=0, undetected_y=0)
    table = pd.read_parquet(path)
    table.loc[:4, "mag_g_lsst"] = 99.0
    table.to_parquet(path)
    frame, report = read_catalog(path, plain)
    assert len(frame) == 295 and sum(report.dropped.values()) == 5 and not report.nondetections
