"""One thread for the spectra family's numerics, so that its results do not depend on how many threads a run has.

A BLAS or OpenMP product splits its sums among the threads it has, and a different split adds in a different
order: the same (n, p) @ (p, m) product with a long p (the weighted PCA's normal equations, its latents'
projections) differs in the last digit between 1 and 2 OpenBLAS threads, and so does faiss's exact L2
search (an OpenMP OpenBLAS sgemm) on wide features. The weighted PCA iterates, so a last-digit difference
reaches every stored number. How many threads a stage gets is not fixed (the cores, OMP_NUM_THREADS and
OPENBLAS_NUM_THREADS from the parent, `resources.threads: auto` counting the idle cores), so two runs of
the same inputs wrote different files.

`one_thread` runs its block on one thread in every BLAS and OpenMP library loaded (threadpoolctl: numpy's and
scipy's OpenBLAS, faiss's OpenMP OpenBLAS and libgomp, torch's libgomp) and in torch's intra-op pool, and
puts every count back afterwards. A nested `one_thread` does nothing more (no second library scan).
Within one machine and library build the results are then byte-identical run to run; a different CPU
(OpenBLAS picks its kernels by CPU) or library version may still differ in the last digit.

Library code: never reads params; uses threadpoolctl (a scikit-learn dependency) only.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = threading.local()


@contextmanager
def one_thread() -> Iterator[None]:
    """One BLAS / OpenMP / torch thread for the block (also a decorator: `@one_thread()`)."""
    if getattr(_state, "active", False):
        yield
        return
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch is not None else None
    _state.active = True
    try:
        with threadpool_limits(limits=1):
            if torch_before is not None and torch_before != 1:
                torch.set_num_threads(1)
            yield
    finally:
        if torch_before is not None and torch_before != 1:
            torch.set_num_threads(torch_before)
        _state.active = False
