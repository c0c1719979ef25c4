"""External embeddings (as a user exports them from AstroCLIP): HDF5 and Parquet, joined by TARGETID."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from galaxyprop.errors import GalaxypropError
from galaxyprop.features.external import PrecomputedEmbeddings, join_embeddings, read_external_embeddings


@pytest.fixture
def embeddings():
    rng = np.random.default_rng(0)
    ids = np.arange(1000, 1100, dtype=np.int64) * 7919          # TARGETID-like, not row numbers
    return ids, rng.normal(size=(100, 12)).astype(np.float32)


def test_hdf5_and_parquet_read_the_same_matrix(tmp_path, embeddings):
    ids, matrix = embeddings
    with h5py.File(tmp_path / "emb.h5", "w") as handle:
        handle["targetid"] = ids
        handle["image_embeddings"] = matrix
    pd.DataFrame({"TARGETID": ids, "image_embeddings": list(matrix)}).to_parquet(tmp_path / "list.parquet")
    wide = pd.DataFrame(matrix, columns=[f"emb_{i}" for i in range(12)])
    wide.insert(0, "TARGETID", ids)
    wide.to_parquet(tmp_path / "wide.parquet")

    from_h5 = read_external_embeddings(tmp_path / "emb.h5", "image_embeddings")
    from_list = read_external_embeddings(tmp_path / "list.parquet", "image_embeddings")
    from_wide = read_external_embeddings(tmp_path / "wide.parquet", "emb_")
    for frame in (from_h5, from_list, from_wide):
        assert frame.shape == (100, 13)
        np.testing.assert_array_equal(frame["id"], ids)
        np.testing.assert_array_equal(frame.drop(columns="id").to_numpy(), matrix)


def test_join_keeps_catalogue_order_and_counts_missing_and_duplicate_ids(embeddings):
    ids, matrix = embeddings
    frame = pd.DataFrame(matrix, columns=[f"e{i:03d}" for i in range(12)])
    frame.insert(0, "id", ids)
    frame = pd.concat([frame, frame.iloc[[3]]], ignore_index=True)          # one duplicated id
    catalogue = pd.DataFrame({"id": np.r_[ids[[50, 2, 99]], [5, 6]], "z": 0.1})  # two ids not in the file
    joined, report = join_embeddings(catalogue, frame)
    np.testing.assert_array_equal(joined["id"], ids[[50, 2, 99]])
    np.testing.assert_array_equal(joined.drop(columns="id").to_numpy(), matrix[[50, 2, 99]])
    assert (report.n_catalogue, report.n_matched, report.n_missing, report.n_duplicate_ids) == (5, 3, 2, 1)
    assert "2 missing" in report.summary()
    with pytest.raises(GalaxypropError, match="dimension 12, expected 1024"):
        join_embeddings(catalogue, frame, expected_dim=1024)


def test_bad_external_files_give_clear_errors(tmp_path, embeddings):
    ids, matrix = embeddings
    with h5py.File(tmp_path / "emb.h5", "w") as handle:
        handle["targetid"] = ids
        handle["spectrum_embeddings"] = matrix
        handle["short"] = matrix[:50]
    with pytest.raises(GalaxypropError, match=r"emb.h5: no dataset 'image_embeddings' \(has"):
        read_external_embeddings(tmp_path / "emb.h5", "image_embeddings")
    with pytest.raises(GalaxypropError, match="one row per id"):
        read_external_embeddings(tmp_path / "emb.h5", "short")
    with pytest.raises(GalaxypropError, match="no id column/dataset 'OBJID'"):
        read_external_embeddings(tmp_path / "emb.h5", "spectrum_embeddings", id_key="OBJID")
    bad = matrix.copy()
    bad[17, 3] = np.nan
    pd.DataFrame({"TARGETID": ids, "v": list(bad)}).to_parquet(tmp_path / "nan.parquet")
    with pytest.raises(GalaxypropError, match=f"embedding row 17 \\(id {ids[17]}\\) has non-finite"):
        read_external_embeddings(tmp_path / "nan.parquet", "v")
    with pytest.raises(GalaxypropError, match="not found"):
        read_external_embeddings(tmp_path / "absent.h5", "v")
    (tmp_path / "emb.csv").write_text("a,b\n")
    with pytest.raises(GalaxypropError, match=".h5/.hdf5 or .parquet"):
        read_external_embeddings(tmp_path / "emb.csv", "v")


def test_precomputed_embeddings_check_their_dimension():
    encoder = PrecomputedEmbeddings(8)
    assert encoder.transform(np.ones((3, 8))).shape == (3, 8)
    with pytest.raises(GalaxypropError, match=r"shape \(N, 8\)"):
        encoder.transform(np.ones((3, 9)))


def test_ids_of_any_type_join(tmp_path, embeddings):
    """Names (HDF5 bytes, Parquet strings) join a catalogue with names; TARGETIDs written as text join
    integer TARGETIDs; names never match integers."""
    ids, matrix = embeddings
    names = np.array([f"gal{i:05d}" for i in range(100)])
    with h5py.File(tmp_path / "names.h5", "w") as handle:
        handle["id"] = names.astype("S")
        handle["image_embeddings"] = matrix
    pd.DataFrame({"TARGETID": ids.astype(str), "image_embeddings": list(matrix)}).to_parquet(tmp_path / "text.parquet")
    by_name = read_external_embeddings(tmp_path / "names.h5", "image_embeddings")
    assert by_name["id"].tolist() == names.tolist()
    joined, report = join_embeddings(pd.DataFrame({"id": names[[5, 1]].astype(object)}), by_name)
    assert joined["id"].tolist() == ["gal00005", "gal00001"] and report.n_matched == 2
    np.testing.assert_array_equal(joined.drop(columns="id").to_numpy(), matrix[[5, 1]])
    by_text = read_external_embeddings(tmp_path / "text.parquet", "image_embeddings")
    assert by_text["id"].dtype == np.int64
    assert join_embeddings(pd.DataFrame({"id": ids[[7]]}), by_text)[1].n_matched == 1
    assert join_embeddings(pd.DataFrame({"id": names[[7]].astype(object)}), by_text)[1].n_matched == 0
    with h5py.File(tmp_path / "mixed.h5", "w") as handle:
        handle["id"] = np.array([b"gal1", b""] + [b"x%d" % i for i in range(98)])
        handle["image_embeddings"] = matrix
    with pytest.raises(GalaxypropError, match=r"mixed.h5: ids: row 1 has no id"):
        read_external_embeddings(tmp_path / "mixed.h5", "image_embeddings")
