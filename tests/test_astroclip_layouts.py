"""Every published AstroCLIP layout (flat, grouped release HDF5, HuggingFace Parquet shards) read
behind one interface, built from one mock flat file so each must give back exactly its content."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from galaxyprop.data.astroclip import AstroclipFile, astroclip_layout, open_astroclip, shard_split
from galaxyprop.data.desi import IMAGE_GROUP, IMAGE_GROUP_ROW, IMAGE_ROW, read_desi
from galaxyprop.data.importing import import_source
from galaxyprop.data.sources import load_source, source_split
from galaxyprop.data.splits import split_frame
from galaxyprop.errors import GalaxypropError
from galaxyprop.mock.survey import simulate_survey
from galaxyprop.workspace import raw_images

from astroclip_layouts import write_grouped, write_parquet_shards
from conftest import desi_targets, mock_config

pytestmark = pytest.mark.slow   # simulation, servers or concurrency: left out of `make test-fast`

N = 40
GROUPS = [21, 7, 12]
ROWS = np.array([39, 0, 17, 17, 5, 33, 21, 28, 20, 2])    # any order, repeats, across groups/shards


@pytest.fixture(scope="module")
def files(tmp_path_factory, params):
    root = tmp_path_factory.mktemp("layouts")
    config = mock_config(params, n_galaxies=N, n_jobs=1, chunk_size=20, **{"imaging.stamp_size": 16})
    flat = root / "astroclip.h5"
    simulate_survey(config, flat, root / "fastspec.fits", progress=False)
    write_grouped(flat, root / "grouped.h5", GROUPS)
    write_grouped(flat, root / "grouped11.h5", [4] * 9 + [2, 2], string_ids=True)   # groups "0".."10"
    write_parquet_shards(flat, root / "shards", n_train_shards=2, n_test_shards=1, row_group_size=3, subdir="data")
    write_parquet_shards(flat, root / "plain", n_train_shards=1, n_test_shards=1, hf_extension=False)
    return {"flat": flat, "catalog": root / "fastspec.fits", "grouped": root / "grouped.h5",
            "grouped11": root / "grouped11.h5", "folder": root / "shards",
            "glob": Path(f"{root}/shards/data/*-*.parquet"), "plain": root / "plain", "root": root}


LAYOUT_OF = {"flat": "flat", "grouped": "grouped", "grouped11": "grouped", "folder": "parquet",
             "glob": "parquet", "plain": "parquet"}


@pytest.mark.parametrize("name", list(LAYOUT_OF))
def test_every_layout_reads_the_flat_files_content(files, name):
    assert astroclip_layout(files[name]) == LAYOUT_OF[name]
    with AstroclipFile(files["flat"]) as flat, AstroclipFile(files[name]) as other:
        assert other.layout == LAYOUT_OF[name] and isinstance(other, AstroclipFile)
        assert other.n_rows == flat.n_rows == N
        ids, z = other.index()
        flat_ids, flat_z = flat.index()
        np.testing.assert_array_equal(ids.astype(np.int64), flat_ids)
        np.testing.assert_array_equal(z, flat_z)
        np.testing.assert_array_equal(other.ids(ROWS).astype(np.int64), flat_ids[ROWS])
        np.testing.assert_array_equal(other.images(ROWS), flat.images(ROWS))
        np.testing.assert_array_equal(other.cutouts(ROWS), flat.cutouts(ROWS))
        assert other.cutouts(ROWS).shape == (len(ROWS), 3, 16, 16)
        flux, ivar = other.spectra(ROWS)
        np.testing.assert_array_equal(flux, flat.spectra(ROWS)[0])
        assert flux.shape == (len(ROWS), 7781) and (ivar is None) == (name != "flat")
        assert other.images(np.array([], int)).shape == (0, 16, 16, 3)
        assert other.spectra(np.array([], int))[0].shape == (0, 7781)


def test_string_ids_are_decoded(files):
    with AstroclipFile(files["grouped11"]) as f:
        ids = f.ids(ROWS)
        assert ids.dtype.kind == "U" and isinstance(ids[0], str)


def test_groups_are_read_in_numeric_order_and_traced_back(files):
    with h5py.File(files["grouped11"]) as handle:
        assert list(handle)[:3] == ["0", "1", "10"]         # HDF5's own (alphabetical) order
    with AstroclipFile(files["grouped11"]) as f, h5py.File(files["grouped11"]) as handle:
        assert f.groups == [str(i) for i in range(11)]
        groups, local = f.origin(np.array([0, 35, 36, 38, 39, 3]))
        assert list(groups) == ["0", "8", "9", "10", "10", "0"] and list(local) == [0, 3, 0, 0, 1, 3]
        for rows in (ROWS, np.arange(N)):
            groups, local = f.origin(rows)
            np.testing.assert_array_equal(
                [handle[g]["targetids"][r].decode() for g, r in zip(groups, local, strict=True)], f.ids(rows))


def test_shards_are_traced_back(files):
    with AstroclipFile(files["folder"]) as f:
        assert f.shard_names == ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
                                 "data/test-00000-of-00001.parquet"]
        shards, local = f.origin(ROWS)
        for shard, row, target in zip(shards, local, f.ids(ROWS), strict=True):
            column = pq.read_table(files["folder"] / shard, columns=["targetid"]).column(0)
            assert column[int(row)].as_py() == target
    with AstroclipFile(files["glob"]) as f:
        assert f.shard_names[0] == "train-00000-of-00002.parquet"


def test_file_split_follows_astroclip_rules(files):
    with AstroclipFile(files["flat"]) as f:
        assert f.file_split() is None
    with AstroclipFile(files["grouped"]) as f:
        expected = np.concatenate([["train"] * int(0.8 * n) + ["test"] * (n - int(0.8 * n)) for n in GROUPS])
        np.testing.assert_array_equal(f.file_split(), expected)
        assert list(expected[21:28]) == ["train"] * 5 + ["test"] * 2
    for name in ("folder", "glob", "plain"):
        with AstroclipFile(files[name]) as f:
            np.testing.assert_array_equal(f.file_split(), ["train"] * 32 + ["test"] * 8)
    assert shard_split("data/train-00000-of-00004.parquet") == "train"
    assert shard_split("default/partial-test/0000.parquet") == "test"
    assert shard_split("part-0.parquet") is None


@pytest.mark.parametrize("name", ["grouped", "grouped11", "folder", "glob"])
def test_read_desi_gives_the_flat_frame(files, params, name):
    flat, _ = read_desi(files["flat"], files["catalog"], targets=desi_targets(params))
    other, report = read_desi(files[name], files["catalog"], targets=desi_targets(params))
    assert report.n_kept == len(flat) == N
    assert IMAGE_GROUP not in flat and IMAGE_GROUP_ROW not in flat
    assert list(other.columns) == [*flat.columns[:list(flat.columns).index(IMAGE_ROW) + 1], IMAGE_GROUP,
                                   IMAGE_GROUP_ROW, *flat.columns[list(flat.columns).index(IMAGE_ROW) + 1:]]
    pd.testing.assert_frame_equal(other[flat.columns], flat)
    with AstroclipFile(files[name]) as f:
        groups, local = f.origin(other[IMAGE_ROW].to_numpy())
    assert list(other[IMAGE_GROUP]) == list(groups) and np.array_equal(other[IMAGE_GROUP_ROW], local)


def desi_data(params, images, catalog, **spec) -> dict:
    data = copy.deepcopy(params["data"])
    data["source"] = "desi"
    data["z_max"] = None
    data["sources"]["desi"] = {"kind": "desi", "images": str(images), "catalog": str(catalog),
                               "required_bands": ["g", "r", "z", "W1"], **spec}
    return data


@pytest.mark.parametrize("name, imported", [
    ("flat", ["astroclip.h5"]), ("grouped", ["astroclip.h5"]),
    ("folder", ["astroclip/data/train-00000-of-00002.parquet", "astroclip/data/train-00001-of-00002.parquet",
                "astroclip/data/test-00000-of-00001.parquet"]),
    ("glob", ["astroclip/train-00000-of-00002.parquet", "astroclip/train-00001-of-00002.parquet",
              "astroclip/test-00000-of-00001.parquet"]),
])
def test_desi_source_imports_and_loads_every_layout(files, params, tmp_path, name, imported):
    data = desi_data(params, files[name], files["catalog"])
    raw = tmp_path / "raw"
    imported_files = import_source(data, None, raw)
    assert [f.relative_to(raw).as_posix() for f in imported_files] == [*imported, "fastspec.fits"]
    assert raw_images(raw) == raw / imported[0].split("/")[0]
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]
    loaded = load_source(data, raw, params["targets"], params["train"]["targets"]).frame
    reference, _ = read_desi(files["flat"], files["catalog"], targets=desi_targets(params))
    pd.testing.assert_frame_equal(loaded[reference.columns], reference)
    if name == "flat":
        assert list(loaded.columns) == list(reference.columns)
    # a single shard file imports too
    single = desi_data(params, files["folder"] / "data/test-00000-of-00001.parquet", files["catalog"])
    assert [f.name for f in import_source(single, None, tmp_path / "raw1")] == \
        ["test-00000-of-00001.parquet", "fastspec.fits"]
    assert raw_images(tmp_path / "nothing") is None


@pytest.fixture()
def prepare_module(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "pipelines"))
    import prepare

    return prepare


@pytest.mark.parametrize("name", ["grouped", "folder"])
def test_file_split_keeps_the_files_test_rows(files, params, tmp_path, monkeypatch, prepare_module, name):
    data = desi_data(params, files[name], files["catalog"], split="file")
    assert source_split(data) == "file"
    raw = tmp_path / "raw"
    import_source(data, None, raw)
    monkeypatch.setattr(prepare_module, "RAW", raw)
    frame = load_source(data, raw, params["targets"], params["train"]["targets"]).frame
    own = prepare_module.file_split(frame)
    fractions = params["split"]["fractions"]
    splits = split_frame(frame, fractions, 42, 10, own)
    with AstroclipFile(raw_images(raw)) as f:
        test_rows = np.flatnonzero(f.file_split() == "test")
    assert sorted(splits["test"][IMAGE_ROW]) == list(test_rows)
    train_rows = set(np.flatnonzero(own == "train"))
    assert set(splits["train"][IMAGE_ROW]) | set(splits["val"][IMAGE_ROW]) == train_rows
    assert not set(splits["train"][IMAGE_ROW]) & set(splits["val"][IMAGE_ROW])
    share = fractions["val"] / (fractions["train"] + fractions["val"])
    assert abs(len(splits["val"]) - share * len(train_rows)) <= 2
    again = split_frame(frame, fractions, 42, 10, own)
    assert all(again[k].equals(splits[k]) for k in splits)
    assert {IMAGE_GROUP, IMAGE_GROUP_ROW} <= set(splits["test"].columns)


def test_file_split_needs_a_layout_with_one(files, params, tmp_path, monkeypatch, prepare_module):
    data = desi_data(params, files["flat"], files["catalog"], split="file")
    raw = tmp_path / "raw"
    import_source(data, None, raw)
    monkeypatch.setattr(prepare_module, "RAW", raw)
    with pytest.raises(GalaxypropError, match="flat AstroCLIP layout has no train/test split") as err:
        prepare_module.file_split(load_source(data, raw, params["targets"], params["train"]["targets"]).frame)
    assert "\n" not in str(err.value)
    with pytest.raises(GalaxypropError, match=re.escape("split must be one of ['random', 'file']")):
        source_split(desi_data(params, files["flat"], files["catalog"], split="astroclip"))


def test_layout_detector_says_none_for_other_files(files, tmp_path):
    catalogue = tmp_path / "catalogue.parquet"
    pd.DataFrame({"Z": [0.1, 0.2], "FLUX_R": [1.0, 2.0]}).to_parquet(catalogue)
    empty = tmp_path / "empty.h5"
    h5py.File(empty, "w").close()
    for path in (catalogue, empty, tmp_path / "missing.h5", tmp_path / "none-*.parquet", files["catalog"]):
        assert astroclip_layout(path) is None


def spoiled_grouped(files, tmp_path, edit) -> Path:
    path = tmp_path / "spoiled.h5"
    write_grouped(files["flat"], path, GROUPS)
    with h5py.File(path, "a") as handle:
        edit(handle)
    return path


def _resize(handle, key, n):
    values = handle[key][:n]
    del handle[key]
    handle[key] = values


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["1"].__delitem__("images"), "(group 1): missing datasets ['images']"),
    (lambda h: _resize(h, "2/redshifts", 5), "(group 2): datasets differ in length"),
    (lambda h: (h["1"].__delitem__("spectra"), h["1"].create_dataset("spectra", (7, 100, 1), "f4")),
     "(group 1): 'spectra' has shape (7, 100, 1), expected (N, 7781, 1)"),
    (lambda h: (h["2"].__delitem__("images"), h["2"].create_dataset("images", (12, 8, 8, 3), "f4")),
     "groups have different image shapes"),
])
def test_bad_grouped_files_give_one_line_errors(files, tmp_path, edit, message):
    path = spoiled_grouped(files, tmp_path, edit)
    with pytest.raises(GalaxypropError, match=re.escape(message)) as err:
        AstroclipFile(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_bad_parquet_sets_give_one_line_errors(files, tmp_path):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", tmp_path / "nothing-*.parquet"):
        with pytest.raises(GalaxypropError, match="no Parquet shards matched"):
            AstroclipFile(path)
    catalogue = tmp_path / "catalogue.parquet"
    pd.DataFrame({"image": [1.0], "redshift": [0.1]}).to_parquet(catalogue)
    with pytest.raises(GalaxypropError, match=re.escape("missing columns ['spectrum', 'targetid']")) as err:
        AstroclipFile(catalogue)
    assert str(catalogue) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(GalaxypropError, match="row 40 out of range"), AstroclipFile(files["folder"]) as f:
        f.images(np.array([1, 40]))


def corrupted(files, tmp_path) -> tuple[Path, int]:
    """A gzip-compressed grouped file whose images chunk of group "1", row 2 is overwritten."""
    path = write_grouped(files["flat"], tmp_path / "corrupt.h5", GROUPS, compression="gzip")
    with h5py.File(path, "r") as handle:
        info = handle["1"]["images"].id.get_chunk_info(2)
    with open(path, "r+b") as raw:
        raw.seek(info.byte_offset)
        raw.write(b"\xff" * info.size)
    return path, GROUPS[0] + 2


def test_corrupt_chunk_is_one_line_naming_file_rows_and_group(files, tmp_path):
    path, row = corrupted(files, tmp_path)
    with AstroclipFile(path) as f:
        f.images(np.array([0, row - 1, row + 1]))        # the other chunks read fine
        with pytest.raises(GalaxypropError) as err:
            f.images(np.array([3, row, row + 1]))
    message = str(err.value)
    assert message.startswith(f"{path}: rows {row}-{row + 1} (group 1, its rows 2-3) unreadable (")
    assert "\n" not in message


def test_corrupt_chunk_exits_without_traceback(files, tmp_path):
    path, row = corrupted(files, tmp_path)
    code = ("import numpy as np\nfrom galaxyprop.errors import exit_on_error\n"
            "from galaxyprop.data.astroclip import open_astroclip\n"
            f"@exit_on_error\ndef main():\n    with open_astroclip({str(path)!r}) as f:\n"
            f"        f.cutouts(np.arange({row - 2}, {row + 2}))\nmain()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "unreadable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_open_astroclip_is_the_same_reader(files):
    with open_astroclip(files["grouped"]) as f:
        assert type(f).__name__ == "GroupedFile" and f.n_rows == N
