"""The spectrum heads give the same bytes whatever the thread count (issue 32, item 8): faiss's exact search
(an OpenMP OpenBLAS sgemm) on wide features gave other last digits with 2 threads than with 1, so the knn
head's chosen k, weights and predictions, and the spectra stage's files, depended on the machine's load."""

from __future__ import annotations

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from galaxyprop.data.io import save_object
from galaxyprop.spectra.heads import make_spectrum_head


def test_spectrum_heads_give_the_same_bytes_with_one_and_two_threads(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1800, 256)).astype(np.float32)       # 256 features: wide enough for faiss's sgemm
    Y = np.tanh(X @ rng.standard_normal((256, 8)) / 16) + 0.1 * rng.standard_normal((1800, 8))
    train, val = slice(0, 1000), slice(1000, None)
    for name, options in (("knn", {}), ("mlp", {"max_epochs": 3, "n_members": 2, "width": 32})):
        out = {}
        for threads in (1, 2):
            torch_threads = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with threadpool_limits(threads):
                    before = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}
                    head = make_spectrum_head(name, **options).fit(X[train], Y[train], X[val], Y[val])
                    mean, std = head.predict(X[val])
                    draws = head.sample(X[val][:20], 4, np.random.default_rng(1))
                    # the caller's thread counts are back afterwards
                    after = {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()}
                    assert {path: after[path] for path in before} == before
                    assert torch.get_num_threads() == threads
            finally:
                torch.set_num_threads(torch_threads)
            save_object(head, tmp_path / f"{name}_{threads}.joblib")
            out[threads] = mean, std, draws, (tmp_path / f"{name}_{threads}.joblib").read_bytes()
        for one, two in zip(out[1], out[2], strict=True):
            assert one == two if isinstance(one, bytes) else np.array_equal(one, two), name
