"""Batch prediction of registered models over files: every format, chunked, resumable, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.table import Table

from galaxyprop.deploy.batch import predict_file
from galaxyprop.errors import GalaxypropError

from conftest import mlflow_store
from registered_models import register_models, served, stores, write_astroclip

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
    assert list(out.columns) == ["TARGETID", "prediction", "spread", "q02", "q16", "q50", "q84", "q98", "in_support",
                                 "support_distance"]
    np.testing.assert_array_equal(out["TARGETID"], np.arange(len(models.galaxies)) + 1000)
    np.testing.assert_allclose(out.drop(columns=["TARGETID", "in_support"]), whole.drop(columns=["density", "in_support"]))
    assert out["in_support"].tolist() == whole["in_support"].tolist()
    assert not (tmp_path / "out.parquet.parts").exists()


def test_flux_columns_as_arrow_tensors_predict_like_plain_ones(models, catalogue_model, tmp_path):
    """pyarrow's fixed_shape_tensor extension type (one value a cell), as some writers store columns: read,
    not a traceback from pandas."""
    import pyarrow as pa

    plain = survey_file(models.galaxies, tmp_path / "plain.parquet", ".parquet")
    table = pq.read_table(plain)
    for name in (c.upper() for c in FLUXES):
        tensor = pa.FixedShapeTensorArray.from_numpy_ndarray(table[name].to_numpy().reshape(-1, 1))
        table = table.set_column(table.schema.get_field_index(name), name, tensor)
    pq.write_table(table, tmp_path / "tensor.parquet")
    assert str(pq.read_schema(tmp_path / "tensor.parquet").field("FLUX_G").type).startswith("extension<arrow.fixed_")
    for source in (plain, tmp_path / "tensor.parquet"):
        predict_file(catalogue_model, models.catalogue_uri, source, tmp_path / f"{source.stem}.out.parquet",
                     progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "plain.out.parquet"),
                                  pd.read_parquet(tmp_path / "tensor.out.parquet"))


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
    with pytest.raises(GalaxypropError, match=r"s.txt: unsupported catalogue format '.txt'"):
        predict_file(catalogue_model, models.catalogue_uri, tmp_path / "s.txt", tmp_path / "o.parquet", progress=False)
    images = write_astroclip(tmp_path / "c.h5", models.images[:3], np.arange(3))
    with pytest.raises(GalaxypropError, match="takes catalogue columns .* not an image file"):
        predict_file(catalogue_model, models.catalogue_uri, images, tmp_path / "o.parquet", progress=False)
    negative = survey_file(models.galaxies.head(10).assign(flux_r=-1.0), tmp_path / "n.parquet", ".parquet")
    with pytest.raises(GalaxypropError, match=r"n.parquet: rows 0-9: row 0: column 'flux_r' must be a positive"):
        predict_file(catalogue_model, models.catalogue_uri, negative, tmp_path / "o.parquet", progress=False)
    assert not (tmp_path / "o.parquet").exists()


def magnitude_catalogue(galaxies: pd.DataFrame, path, ids) -> pd.DataFrame:
    """The galaxies as a user's CSV: string ids, AB magnitudes and their errors, Galactic extinction."""
    from galaxyprop.physics.magnitudes import flux_to_mag

    table = pd.DataFrame({"name": ids})
    for band in "ugriz":
        flux, ivar = galaxies[f"flux_{band}"].to_numpy(), galaxies[f"flux_ivar_{band}"].to_numpy()
        extinction = 0.05 + 0.01 * np.arange(len(galaxies)) % 0.1
        table[f"mag_{band}"] = flux_to_mag(flux) + extinction         # as observed: dimmed by the dust
        table[f"err_{band}"] = 2.5 / np.log(10) / (flux * np.sqrt(ivar))
        table[f"ext_{band}"] = extinction
    table.to_csv(path, index=False)
    return table


MAGNITUDE_MAP = {"columns": {"id": "name", "redshift": "zspec"},
                 "bands": {b: {"mag": f"mag_{b}", "mag_err": f"err_{b}", "extinction": f"ext_{b}"} for b in "ugriz"}}


def test_string_ids_and_magnitudes_through_a_column_map(models, catalogue_model, tmp_path):
    """A CSV with names like gal00010, magnitudes and extinction, read through a source's column map,
    predicts exactly what the model gives on the fluxes, keyed by the names (leading zeros kept)."""
    from collections import Counter

    from galaxyprop.data.catalog import CatalogSpec

    galaxies = models.galaxies.head(120).reset_index(drop=True)
    ids = [f"gal{i:05d}" for i in range(len(galaxies))]
    table = magnitude_catalogue(galaxies, tmp_path / "mine.csv", ids)
    table.loc[7, "mag_r"] = 99.0                                   # a sentinel: the row is skipped and counted
    table.to_csv(tmp_path / "mine.csv", index=False)
    spec = CatalogSpec.from_params(MAGNITUDE_MAP)
    dropped = Counter()
    n = predict_file(catalogue_model, models.catalogue_uri, tmp_path / "mine.csv", tmp_path / "out.parquet",
                     chunk_size=50, progress=False, source=("mine", spec), dropped=dropped)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert n == len(galaxies) - 1 and dict(dropped) == {"r flux unusable: non-finite or non-positive (mag_r)": 1}
    assert out["TARGETID"].tolist() == [i for k, i in enumerate(ids) if k != 7]
    expected = catalogue_model.predict(galaxies.drop(index=7)[FLUXES])
    np.testing.assert_allclose(out["prediction"], expected["prediction"], rtol=1e-6)
    np.testing.assert_allclose(out[["q16", "q84"]], expected[["q16", "q84"]], rtol=1e-5)
    # every row dropped by the column map: the reasons, not only "no rows"
    table["mag_r"] = 99.0
    table.to_csv(tmp_path / "none.csv", index=False)
    with pytest.raises(GalaxypropError, match=r"none.csv: no rows to predict \(every row was dropped: r flux "
                                              r"unusable: non-finite or non-positive \(mag_r\): 120\)"):
        predict_file(catalogue_model, models.catalogue_uri, tmp_path / "none.csv", tmp_path / "none.parquet",
                     chunk_size=50, progress=False, source=("mine", spec))


def test_ids_keep_their_type_and_bad_ids_are_named(models, catalogue_model, tmp_path):
    galaxies = models.galaxies.head(20)
    table = galaxies[FLUXES].assign(TARGETID=[f"{i:03d}" for i in range(20)])   # '007': a name, not 7
    table.to_csv(tmp_path / "zeros.csv", index=False)
    predict_file(catalogue_model, models.catalogue_uri, tmp_path / "zeros.csv", tmp_path / "z.parquet", progress=False)
    assert pd.read_parquet(tmp_path / "z.parquet")["TARGETID"].tolist()[:3] == ["000", "001", "002"]
    table.assign(TARGETID=np.arange(20) + 39627000000000000).to_csv(tmp_path / "int.csv", index=False)
    predict_file(catalogue_model, models.catalogue_uri, tmp_path / "int.csv", tmp_path / "i.parquet", progress=False)
    assert pd.read_parquet(tmp_path / "i.parquet")["TARGETID"].dtype == np.int64
    table.assign(TARGETID=["a"] * 20).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(GalaxypropError, match=r"dup.csv: id column 'TARGETID' \(rows 0-19\): id 'a' is repeated"):
        predict_file(catalogue_model, models.catalogue_uri, tmp_path / "dup.csv", tmp_path / "d.parquet", progress=False)
    # rows 3 and 15 share an id, in different chunks of 10: refused, naming both rows, and nothing written
    ids = [f"g{i}" for i in range(20)]
    ids[15] = "g3"
    table.assign(TARGETID=ids).to_csv(tmp_path / "across.csv", index=False)
    with pytest.raises(GalaxypropError, match=r"across.csv: id g3 is repeated \(row 15 of the chunk from row 10, "
                                              r"and row 3 of the chunk from row 0\)"):
        predict_file(catalogue_model, models.catalogue_uri, tmp_path / "across.csv", tmp_path / "a.parquet", 10,
                     progress=False)
    assert not (tmp_path / "a.parquet").exists()
    # integers mixed with a name: refused within a chunk and across chunks, nothing written back as text
    mixed = [str(39627000000000000 + i) for i in range(20)]
    mixed[12] = "gal12"
    table.assign(TARGETID=mixed).to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(GalaxypropError, match=r"mixed.csv: id column 'TARGETID' \(rows 0-19\): ids mix integers \(row 0: "
                                              r"39627000000000000\) and names \(row 12: 'gal12'; 1 names, 19 integers\)"):
        predict_file(catalogue_model, models.catalogue_uri, tmp_path / "mixed.csv", tmp_path / "m.parquet", progress=False)
    table.assign(TARGETID=mixed[:10] + [f"gal{i}" for i in range(10, 20)]).to_csv(tmp_path / "halves.csv", index=False)
    with pytest.raises(GalaxypropError, match=r"halves.csv: ids mix integers \(the chunk from row 0\) and names \(the "
                                              r"chunk from row 10\)"):
        predict_file(catalogue_model, models.catalogue_uri, tmp_path / "halves.csv", tmp_path / "m.parquet", 10,
                     progress=False)
    assert not (tmp_path / "m.parquet").exists()
    table.assign(TARGETID=["a", None] + [f"b{i}" for i in range(18)]).to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(GalaxypropError, match=r"gap.csv: id column 'TARGETID' \(rows 0-19\): row 1 has no id"):
        predict_file(catalogue_model, models.catalogue_uri, tmp_path / "gap.csv", tmp_path / "g.parquet", progress=False)


def test_schema_errors_keep_their_reason(models, catalogue_model, tmp_path):
    small = write_astroclip(tmp_path / "small.h5", models.images[:4, :, :16, :16], np.arange(4))
    with pytest.raises(GalaxypropError) as error:
        predict_file(models.image, models.image_uri, small, tmp_path / "o.parquet", progress=False)
    message = str(error.value)
    assert "small.h5: rows 0-3: " in message and "does not match expected shape (-1, 3, 20, 20)" in message
    assert "\n" not in message and len(message) < 400
    text = survey_file(models.galaxies.head(5), tmp_path / "t.parquet", ".parquet")
    pd.read_parquet(text).assign(FLUX_G="bright").to_parquet(text)
    with pytest.raises(GalaxypropError, match=r"t.parquet: rows 0-4: .*flux_g") as error:
        predict_file(catalogue_model, models.catalogue_uri, text, tmp_path / "t_out.parquet", progress=False)
    assert "Failed to enforce schema of data" not in str(error.value)


@pytest.mark.slow
def test_served_400_bodies_give_the_reason_not_the_payload(models):
    """The scoring server `galaxyprop serve` runs answers bad payloads with HTTP 400 and the reason alone."""
    import json

    with served(stores(models.root).tracking_uri, models.image_uri) as post:
        status, body = post(json.dumps({"inputs": models.images[:3].tolist()}).encode())
        assert status == 200 and len(json.loads(body)["predictions"]) == 3
        wrong = json.dumps({"inputs": models.images[:10, :, :16, :16].tolist()}).encode()
        status, body = post(wrong)
        answer = json.loads(body)
        assert status == 400 and len(body) < 600, (status, len(body))
        assert "does not match expected shape (-1, 3, 20, 20)" in answer["message"]
        with_nan = models.images[:2].copy()
        with_nan[1, 0, 3, 3] = np.nan
        status, body = post(json.dumps({"inputs": with_nan.tolist()}).encode())
        assert status == 400 and "images row 1 has NaN or infinite pixels" in json.loads(body)["message"]
        assert len(body) < 600


def test_grouped_and_parquet_astroclip_files_predict_like_the_flat_one(models, tmp_path):
    """The release layouts (groups of unequal lengths; HuggingFace Parquet shards, given as a folder or a
    glob) give the flat file's predictions, each row with where it lies in the file."""
    from astroclip_layouts import write_grouped, write_parquet_shards

    n = len(models.images)
    flat = write_astroclip(tmp_path / "flat.h5", models.images, np.arange(n) + 500)
    predict_file(models.image, models.image_uri, flat, tmp_path / "flat.parquet", chunk_size=64, progress=False)
    expected = pd.read_parquet(tmp_path / "flat.parquet")
    grouped = write_grouped(flat, tmp_path / "grouped.h5", [90, 10, n - 100])
    write_parquet_shards(flat, tmp_path / "shards", n_train_shards=2, n_test_shards=1, row_group_size=16)
    for name, path in (("grouped", grouped), ("folder", tmp_path / "shards"),
                       ("glob", tmp_path / "shards" / "*.parquet")):
        out = tmp_path / f"{name}.parquet"
        predict_file(models.image, models.image_uri, path, out, chunk_size=64, progress=False)
        got = pd.read_parquet(out)
        pd.testing.assert_frame_equal(got[expected.columns], expected, check_exact=False, rtol=1e-6)
        assert {"image_group", "image_group_row"} <= set(got.columns)
    got = pd.read_parquet(tmp_path / "grouped.parquet")
    assert got["image_group"].tolist() == ["0"] * 90 + ["1"] * 10 + ["2"] * (n - 100)
    assert got["image_group_row"].tolist() == [*range(90), *range(10), *range(n - 100)]


def test_an_empty_file_is_refused_and_leaves_no_partial_run(models, catalogue_model, tmp_path):
    source = survey_file(models.galaxies.iloc[:0], tmp_path / "empty.csv", ".csv")
    out = tmp_path / "out.parquet"
    with pytest.raises(GalaxypropError, match="empty.csv: no rows to predict"):
        predict_file(catalogue_model, models.catalogue_uri, source, out, progress=False)
    assert not out.exists() and not out.with_name("out.parquet.parts").exists()


def test_the_prediction_file_describes_itself(models, catalogue_model, tmp_path):
    """The Parquet schema metadata names the model, its target, every column (the mean `prediction`
    and the calibrated median `q50` told apart) and, with densities, the grid's bin edges."""
    import json

    from galaxyprop.deploy.batch import OUTPUT_METADATA

    source = survey_file(models.galaxies, tmp_path / "survey.parquet", ".parquet")
    output = tmp_path / "described.parquet"
    predict_file(catalogue_model, models.catalogue_uri, source, output, 64, densities=True, progress=False)
    about = json.loads(pq.read_schema(output).metadata[OUTPUT_METADATA])
    assert about["model_uri"] == models.catalogue_uri and about["target"] == "z"
    assert set(about["columns"]) == set(pd.read_parquet(output).columns)
    assert "not changed by calibration" in about["columns"]["prediction"] and "median" in about["columns"]["q50"]
    grid = about["density_grid"]
    edges = np.asarray(grid["bin_edges"])
    assert len(edges) == grid["n_bins"] + 1 == len(pd.read_parquet(output)["density"].iloc[0]) + 1
    assert edges[0] == grid["low"] and edges[-1] == grid["high"]


def test_predictions_written_as_a_qp_file_that_qp_reads(models, catalogue_model, tmp_path):
    """`predict --format qp`: the densities as a qp ensemble on the model's grid, the ids and point
    estimates as its ancillary data, the same numbers as the Parquet."""
    import qp

    from galaxyprop.deploy.batch import parquet_to_qp

    source = survey_file(models.galaxies, tmp_path / "survey.parquet", ".parquet")
    table = tmp_path / "z.parquet"
    predict_file(catalogue_model, models.catalogue_uri, source, table, 64, densities=True, progress=False)
    assert parquet_to_qp(table, tmp_path / "z.hdf5") == len(models.galaxies)
    ensemble, frame = qp.read(str(tmp_path / "z.hdf5")), pd.read_parquet(table)
    assert ensemble.npdf == len(frame)
    np.testing.assert_array_equal(ensemble.ancil["TARGETID"], frame["TARGETID"])
    np.testing.assert_allclose(ensemble.ancil["q50"], frame["q50"])
    np.testing.assert_allclose(ensemble.median().ravel(), frame["q50"], atol=0.8 / 200)    # within a bin
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS"])
def test_a_full_disk_or_read_only_folder_is_one_line_and_leaves_no_partial_file(models, catalogue_model, tmp_path,
                                                                               monkeypatch, capsys, code):
    """The machine refusing the output's write (simulated: the Parquet writer fails after its first row
    group): one line naming the file, exit 2, no output and no temporary file; the next run finishes."""
    import errno
    import os

    from galaxyprop.errors import exit_on_error

    source = survey_file(models.galaxies, tmp_path / "survey.parquet", ".parquet")
    output = tmp_path / "out" / "z.parquet"
    real = pq.ParquetWriter.write_table

    def refuse(writer, table, *args, **kwargs):
        real(writer, table, *args, **kwargs)
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(writer.where))

    monkeypatch.setattr(pq.ParquetWriter, "write_table", refuse)
    with pytest.raises(SystemExit) as stop:
        exit_on_error(predict_file)(catalogue_model, models.catalogue_uri, source, output, 64, progress=False)
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith("galaxyprop: error: ") and os.strerror(getattr(errno, code)) in line
    assert str(output.parent) in line and "nothing half-written" in line
    assert not output.exists() and not list(output.parent.glob(".z.parquet.*"))
    monkeypatch.undo()
    assert predict_file(catalogue_model, models.catalogue_uri, source, output, 64, progress=False) == len(models.galaxies)
