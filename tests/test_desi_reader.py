"""One reader for AstroCLIP HDF5 + FastSpecFit FITS (both layouts), with the bad-input rules."""

from __future__ import annotations

import re
import shutil

import h5py
import numpy as np
import pytest
from astropy.io import fits

from galaxyprop.data import schema
from galaxyprop.data.astroclip import AstroclipFile
from galaxyprop.data.desi import IMAGE_ROW, read_desi
from galaxyprop.data.fastspecfit import read_fastspec, write_fastspec
from galaxyprop.errors import GalaxypropError
from galaxyprop.mock.survey import simulate_survey

from conftest import desi_targets, mock_config


@pytest.fixture(scope="module")
def mock_files(tmp_path_factory, params):
    root = tmp_path_factory.mktemp("mock")
    config = mock_config(params, n_galaxies=40, n_jobs=1, chunk_size=20, **{"imaging.stamp_size": 16})
    simulate_survey(config, root / "astroclip.h5", root / "fastspec.fits", progress=False)
    return root / "astroclip.h5", root / "fastspec.fits"


def hdus(path):
    with fits.open(path) as handle:
        return {h.name: {c: np.asarray(h.data[c]) for c in h.data.columns.names} for h in handle[1:]}


@pytest.mark.slow
def test_reader_joins_files_into_the_layout(params, mock_files):
    images, catalog = mock_files
    frame, report = read_desi(images, catalog, targets=desi_targets(params))
    tables = hdus(catalog)
    assert report.n_input == 40 and report.n_kept == len(frame) == 40
    with AstroclipFile(images) as handle:
        ids, _ = handle.index()
        assert np.array_equal(ids[frame[IMAGE_ROW]], frame[schema.ID])
        assert handle.images(np.array([3, 1])).shape == (2, 16, 16, 3)
        flux, ivar = handle.spectra(np.array([0]))
        assert flux.shape == ivar.shape == (1, 7781) and np.all(ivar > 0)
    order = np.argsort(tables["METADATA"]["TARGETID"])
    np.testing.assert_allclose(frame["kcorr_r01"], tables["SPECPHOT"]["KCORR01_SDSS_R"][order], rtol=1e-6)
    np.testing.assert_allclose(frame["flux_W1"], tables["METADATA"]["FLUX_W1"][order], rtol=1e-6)
    assert set(frame[schema.PHOTSYS]) <= {"N", "S"}
    # the targets of train.targets from their FastSpecFit columns, nothing else
    assert set(frame.columns) - {schema.ID, schema.REDSHIFT, schema.PHOTSYS, IMAGE_ROW} - {
        c for b in "grzW" for c in (f"flux_{b}", f"flux_ivar_{b}")} == {"flux_W1", "flux_ivar_W1",
                                                                       *params["train"]["targets"]} - {"z"}
    np.testing.assert_allclose(frame["logmstar"], tables["SPECPHOT"]["LOGMSTAR"][order], rtol=1e-6)
    # a target defined only in params: log sSFR from SFR and LOGMSTAR
    ssfr, _ = read_desi(images, catalog, targets=desi_targets(params, ["logssfr"]))
    np.testing.assert_allclose(ssfr["logssfr"], np.log10(tables["SPECPHOT"]["SFR"][order].astype(float))
                               - tables["SPECPHOT"]["LOGMSTAR"][order], rtol=1e-5)


def test_older_fastspec_layout_reads_the_same(params, mock_files, tmp_path):
    images, catalog = mock_files
    tables = hdus(catalog)
    labels = {k: v for k, v in tables["SPECPHOT"].items() if k != "TARGETID"}
    older = tmp_path / "fastspec-old.fits"
    write_fastspec(older, tables["METADATA"], labels, layout="fastspec")
    assert "SPECPHOT" not in [h.name for h in fits.open(older)]
    new, _ = read_desi(images, catalog, targets=desi_targets(params))
    old, _ = read_desi(images, older, targets=desi_targets(params))
    assert new.equals(old)


def edited_catalog(catalog, tmp_path, hdu: str, edit):
    tables = hdus(catalog)
    edit(tables[hdu])
    path = tmp_path / "edited.fits"
    write_fastspec(path, tables["METADATA"], {k: v for k, v in tables["SPECPHOT"].items() if k != "TARGETID"})
    return path


def test_bad_rows_are_dropped_and_counted(params, mock_files, tmp_path):
    images, catalog = mock_files

    def spoil(metadata):
        metadata["Z"][0] = np.nan
        metadata["FLUX_R"][1] = -3.0
        metadata["PHOTSYS"][2] = "X"
        metadata["Z"][3] += 0.01           # no longer the image file's redshift

    frame, report = read_desi(images, edited_catalog(catalog, tmp_path, "METADATA", spoil), z_max=np.inf,
                               targets=desi_targets(params))
    assert report.n_kept == 36 and len(frame) == 36
    assert report.dropped == {"redshift Z missing or negative": 1,
                              "r flux unusable: non-finite or non-positive (FLUX_R)": 1,
                              "PHOTSYS not one of ['N', 'S']": 1,
                              "Z differs between the catalogue and the image file": 1}


def test_unmatched_targetids_are_counted(params, mock_files, tmp_path):
    images, catalog = mock_files
    tables = hdus(catalog)
    keep = slice(5, None)
    path = tmp_path / "fewer.fits"
    write_fastspec(path, {k: v[keep] for k, v in tables["METADATA"].items()},
                   {k: v[keep] for k, v in tables["SPECPHOT"].items() if k != "TARGETID"})
    frame, report = read_desi(images, path, targets=desi_targets(params))
    assert report.dropped["TARGETID not in fewer.fits"] == 5 and len(frame) == 35


@pytest.mark.parametrize("problem, message", [
    ("no_flux_column", "column 'FLUX_R' (band r flux) not found"),
    ("no_metadata", "no METADATA HDU"),
    ("no_images", "missing datasets ['images']"),
    ("misaligned", "TARGETID of HDU SPECPHOT does not match METADATA"),
])
def test_bad_files_give_one_line_errors(params, mock_files, tmp_path, problem, message):
    images, catalog = mock_files
    tables = hdus(catalog)
    labels = {k: v for k, v in tables["SPECPHOT"].items() if k != "TARGETID"}
    if problem == "no_flux_column":
        del tables["METADATA"]["FLUX_R"]
        catalog = tmp_path / "c.fits"
        write_fastspec(catalog, tables["METADATA"], labels)
    elif problem == "no_metadata":
        catalog = tmp_path / "c.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
            [fits.Column("TARGETID", "K", array=tables["METADATA"]["TARGETID"])], name="FASTSPEC")]).writeto(catalog)
    elif problem == "no_images":
        copy = tmp_path / "a.h5"
        shutil.copyfile(images, copy)
        with h5py.File(copy, "a") as handle:
            del handle["images"]
        images = copy
    else:
        catalog = tmp_path / "c.fits"
        metadata = dict(tables["METADATA"])
        specphot = {"TARGETID": tables["SPECPHOT"]["TARGETID"][::-1], **labels}
        write_fastspec(catalog, metadata, {}, extra_hdus={"SPECPHOT": specphot})
    with pytest.raises(GalaxypropError, match=re.escape(message)) as err:
        read_desi(images, catalog, targets=desi_targets(params))
    assert "\n" not in str(err.value)


def test_fastspec_reader_merges_label_columns(mock_files):
    columns = read_fastspec(mock_files[1])
    assert {"TARGETID", "PHOTSYS", "Z", "FLUX_G", "FLUX_IVAR_W1", "KCORR01_SDSS_R", "ABSMAG01_SDSS_Z",
            "LOGMSTAR"} <= set(columns)
