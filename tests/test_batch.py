"""Batch prediction of registered models over files: every format, chunked, resumable, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from conftest import mlflow_store
from registered_models import register_models, stores, write_astroclip

from galaxyprop.batch import predict_file
from galaxyprop.errors import GalaxypropError

FLUXES = [f"flux_{b}" for b in "ugriz"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, params):
    root = tmp_path_factory.mktemp("store")
    with mlflow_store(stores(root).tracking_uri):
        yield register_models(root, params)


@pytest.fixture(scope="module")
def catalogue_model(models):
    return models.catalogue


def survey_file(galaxies: pd.DataFrame, path, suffix: str):
    """The galaxies as a survey would ship them: upper-case columns, TARGETID, in `suffix`'s format."""
    table = galaxies[FLUXES].rename(columns=str.upper).assign(TARGETID=np.arange(len(galaxies)) + 1000, RA=1.0)
    if suffix == ".parquet":
        table.to_parquet(path)
    elif suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        Table.from_pandas(table).write(path, format="fits")
    return path


@pytest.mark.parametrize("suffix", [".parquet", ".fits", ".csv"])
def test_a_catalogue_in_chunks_equals_one_call(models, catalogue_model, tmp_path, suffix):
    source = survey_file(models.galaxies, tmp_path / f"survey{suffix}", suffix)
    n = predict_file(catalogue_model, models.catalogue_uri, source, tmp_path / "out.parquet", chunk_size=64,
                     progress=False)
    out = pd.read_parquet(tmp_path / "out.parquet")
    whole = catalogue_model.predict(models.galaxies[FLUXES])
    assert n == len(models.galaxies) == len(out)
    assert list(out.columns) == ["TARGETID", "prediction", "spread", "q02", "q16", "q50", "q84", "q98"]
    np.testing.assert_array_equal(out["TARGETID"], np.arange(len(models.galaxies)) + 1000)
    np.testing.assert_allclose(out.drop(columns="TARGETID"), whole.drop(columns="density"))
    assert not (tmp_path / "out.parquet.parts").exists()


def test_each_rows_field_picks_its_calibration(models, catalogue_model, tmp_path):
    """A PHOTSYS column gives each row's field; `photsys` one field for the file; the north map here
    doubles the intervals, the south rows take the global one."""
    photsys = np.where(np.arange(len(models.galaxies)) % 2 == 0, "N", "S")
    source = survey_file(models.galaxies, tmp_path / "survey.parquet", ".parquet")
    pd.read_parquet(source).assign(PHOTSYS=photsys).to_parquet(source)
    predict_file(catalogue_model, models.catalogue_uri, source, tmp_path / "rows.parquet", 64, progress=False)
    by_row = pd.read_parquet(tmp_path / "rows.parquet")
    unknown = catalogue_model.predict(models.galaxies[FLUXES])
    north = catalogue_model.predict(models.galaxies[FLUXES], params={"photsys": "north"})
    width = (by_row["q84"] - by_row["q16"]).to_numpy()
    np.testing.assert_allclose(width[photsys == "N"], (north["q84"] - north["q16"]).to_numpy()[photsys == "N"])
    np.testing.assert_allclose(width[photsys == "S"], (unknown["q84"] - unknown["q16"]).to_numpy()[photsys == "S"])
    assert np.median(width[photsys == "N"] / (unknown["q84"] - unknown["q16"]).to_numpy()[photsys == "N"]) > 1.5
    plain = survey_file(models.galaxies, tmp_path / "plain.parquet", ".parquet")
    predict_file(catalogue_model, models.catalogue_uri, plain, tmp_path / "all_n.parquet", 64, progress=False,
                 photsys="N")
    np.testing.assert_allclose(pd.read_parquet(tmp_path / "all_n.parquet")["q84"], north["q84"])
    with pytest.raises(GalaxypropError, match="unknown survey field 'X'"):
        predict_file(catalogue_model, models.catalogue_uri, plain, tmp_path / "x.parquet", 64, progress=False,
                     photsys="X")


class Interrupted(Exception):
    pass


class Flaky:
    """A model that counts its calls and fails at call `fail_at` (an interruption mid-file)."""

    def __init__(self, model, fail_at: int | None = None):
        self.model, self.fail_at, self.calls = model, fail_at, 0
        self.metadata = model.metadata

    def predict(self, inputs, params=None):
        self.calls += 1
        if self.calls == self.fail_at:
            raise Interrupted
        return self.model.predict(inputs, params=params)


def test_an_interrupted_run_resumes_where_it_stopped(models, catalogue_model, tmp_path):
    source = survey_file(models.galaxies, tmp_path / "survey.parquet", ".parquet")
    output = tmp_path / "out.parquet"
    chunks = -(-len(models.galaxies) // 50)
    with pytest.raises(Interrupted):
        predict_file(Flaky(catalogue_model, fail_at=3), models.catalogue_uri, source, output, 50, progress=False)
    assert not output.exists() and len(list((tmp_path / "out.parquet.parts").glob("part-*"))) == 2
    with pytest.raises(GalaxypropError, match=r"partial results from another run \(different \['chunk_size'\]\)"):
        predict_file(catalogue_model, models.catalogue_uri, source, output, 64, progress=False)
    resumed = Flaky(catalogue_model)
    predict_file(resumed, models.catalogue_uri, source, output, 50, progress=False)
    assert resumed.calls == chunks - 2          # only the chunks not written before
    out = pd.read_parquet(output)
    np.testing.assert_allclose(out["prediction"], catalogue_model.predict(models.galaxies[FLUXES])["prediction"])


def test_images_from_an_astroclip_file_with_densities(models, tmp_path):
    model = models.image
    path = write_astroclip(tmp_path / "cutouts.h5", models.images, np.arange(len(models.images)) * 7)
    predict_file(model, models.image_uri, path, tmp_path / "out.parquet", chunk_size=48, densities=True,
                 progress=False)
    out = pd.read_parquet(tmp_path / "out.parquet")
    whole = model.predict(models.images)
    np.testing.assert_array_equal(out["TARGETID"], np.arange(len(models.images)) * 7)
    columns = ["prediction", "q02", "q16", "q84", "q98"]
    np.testing.assert_allclose(out[columns], whole[columns], rtol=1e-6)
    np.testing.assert_allclose(np.stack(out["density"]), np.stack(whole["density"]), rtol=1e-6)
    assert np.stack(out["density"]).shape == (len(models.images), 110)


def test_bad_inputs_name_the_file_and_column(models, catalogue_model, tmp_path):
    source = survey_file(models.galaxies, tmp_path / "s.parquet", ".parquet")
    pd.read_parquet(source).drop(columns="FLUX_I").to_parquet(source)
    with pytest.raises(GalaxypropError, match=r"s.parquet: lacks column\(s\) \['flux_i'\] that the model needs"):
        predict_file(catalogue_model, models.catalogue_uri, source, tmp_path / "o.parquet", progress=False)
    (tmp_path / "s.txt").write_text("x")
    with pytest.raises(GalaxypropError, match=r"s.txt: unsupported input format '.txt'"):
        predict_file(catalogue_model, models.catalogue_uri, tmp_path / "s.txt", tmp_path / "o.parquet", progress=False)
    images = write_astroclip(tmp_path / "c.h5", models.images[:3], np.arange(3))
    with pytest.raises(GalaxypropError, match="takes catalogue columns .* not an image file"):
        predict_file(catalogue_model, models.catalogue_uri, images, tmp_path / "o.parquet", progress=False)
    negative = survey_file(models.galaxies.head(10).assign(flux_r=-1.0), tmp_path / "n.parquet", ".parquet")
    with pytest.raises(GalaxypropError, match=r"n.parquet: rows 0-9: row 0: column 'flux_r' must be a positive"):
        predict_file(catalogue_model, models.catalogue_uri, negative, tmp_path / "o.parquet", progress=False)
    assert not (tmp_path / "o.parquet").exists()
