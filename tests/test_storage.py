"""Storage: the mock's HDF5 filters round-trip bit for bit, and DVC links the outputs to its cache (the
project's .dvc/config) without our writers ever modifying a linked file in place."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from galaxyprop.data.astroclip import FlatFile, astroclip_writer
from galaxyprop.data.astroclip.flat import COMPRESSION
from galaxyprop.data.io import write_json
from galaxyprop.errors import GalaxypropError
from galaxyprop.mock.survey import simulate_survey

from conftest import mock_config

PROJECT = Path(__file__).resolve().parents[1]
DVC = [sys.executable, "-m", "dvc"]


@pytest.fixture(scope="module")
def mock_file(tmp_path_factory, params) -> Path:
    root = tmp_path_factory.mktemp("mock")
    config = mock_config(params, n_galaxies=24, n_jobs=1, chunk_size=12)
    simulate_survey(config, root / "astroclip.h5", root / "fastspec.fits", progress=False)
    return root / "astroclip.h5"


@pytest.mark.slow
@pytest.mark.parametrize("compression", [c for c in COMPRESSION if c is not None])
def test_compressed_mock_reads_back_bit_for_bit(tmp_path, params, mock_file, compression):
    """The same survey written with a filter: the same arrays from the reader, the filter on every
    per-galaxy chunk of the three large datasets, and a smaller file (the shuffle makes the spectra's
    float exponents compressible)."""
    config = mock_config(params, n_galaxies=24, n_jobs=1, chunk_size=12, hdf5_compression=compression)
    path = tmp_path / "astroclip.h5"
    simulate_survey(config, path, tmp_path / "fastspec.fits", progress=False)
    with h5py.File(path) as handle:
        for name in ("images", "spectra", "spectra_ivar"):
            assert handle[name].compression == COMPRESSION[compression]["compression"]
            assert handle[name].shuffle and handle[name].chunks[0] == 1
    plain, packed = FlatFile(mock_file), FlatFile(path)
    rows = np.array([23, 0, 5, 6, 7, 11])
    np.testing.assert_array_equal(packed.images(rows), plain.images(rows))
    for a, b in zip(packed.spectra(rows), plain.spectra(rows), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(packed.ids(rows), plain.ids(rows))
    plain.close()
    packed.close()
    assert path.stat().st_size < 0.95 * mock_file.stat().st_size


def test_unknown_compression_is_one_line(tmp_path, params):
    with pytest.raises(GalaxypropError, match=r"^params mock.hdf5_compression must be one of .*got 'zstd'$"):
        mock_config(params, hdf5_compression="zstd")
    with pytest.raises(GalaxypropError, match="HDF5 compression must be one of"), \
            astroclip_writer(tmp_path / "x.h5", 1, 8, "blosc"):
        pass
    assert list(tmp_path.iterdir()) == []                          # nothing half-written left behind


def _dvc(root: Path, *args: str) -> str:
    done = subprocess.run([*DVC, *args], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow   # fresh processes, a server or a simulation: left out of `make test-fast`
def test_dvc_links_directory_outputs_and_atomic_writes_leave_the_cache_intact(tmp_path):
    """With the project's .dvc/config a stage's directory output (as data/raw) is one inode with its
    cache entry, read-only; a rewrite through our atomic writers replaces the link instead of writing
    into it, so the cached bytes stay as DVC hashed them, and `dvc status` sees the change."""
    root = tmp_path / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    _dvc(root, "init", "-q")
    (root / ".dvc/config").write_text((PROJECT / ".dvc/config").read_text().replace("../.dvcstore", "../../store"))
    (root / "make.py").write_text("from galaxyprop.data.io import write_json\n"
                                  "write_json({'rows': list(range(1000))}, 'raw/table.json')\n")
    _dvc(root, "stage", "add", "-q", "-n", "data", "-d", "make.py", "-o", "raw", f"{sys.executable} make.py")
    _dvc(root, "repro", "-q")
    output = root / "raw" / "table.json"
    cached = [p for p in (root / ".dvc/cache/files/md5").rglob("*") if p.is_file() and not p.name.endswith(".dir")]
    assert len(cached) == 1
    assert output.stat().st_ino == cached[0].stat().st_ino and output.stat().st_nlink == 2
    assert output.stat().st_mode & 0o222 == 0                      # read-only: `dvc unprotect` to edit by hand
    original = cached[0].read_bytes()

    write_json({"rows": []}, output)                               # what a careless rerun outside DVC would do
    assert cached[0].read_bytes() == original
    assert output.stat().st_ino != cached[0].stat().st_ino
    assert "modified" in _dvc(root, "status")
    _dvc(root, "checkout", "-q", "--force")                       # and the cached version comes back, linked
    assert output.read_bytes() == original and output.stat().st_ino == cached[0].stat().st_ino

    _dvc(root, "push", "-q")                                       # the remote holds its own copy
    pushed = [p for p in (tmp_path / "store").rglob("*") if p.is_file() and not p.name.endswith(".dir")]
    assert [p.read_bytes() for p in pushed] == [original] and pushed[0].stat().st_ino != output.stat().st_ino
