"""`compute_threads`: a worker or linker caps the thread pools of its math libraries (numpy's and
FAISS's BLAS, FAISS's OpenMP), so their idle threads do not spin on the cores that the other
roles of a shared machine need."""

from __future__ import annotations

import faiss
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from core.settings import Settings
from distillguard.wiring import limit_compute_threads


def pools() -> dict[str, int]:
    return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()}


def test_one_compute_thread_caps_every_blas_and_openmp_pool() -> None:
    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS loaded, as in a worker
    with threadpool_limits(limits=2):  # as on this 2-core machine, whatever the CI has; restored
        assert set(pools().values()) == {2}
        assert faiss.omp_get_max_threads() == 2
        limit_compute_threads(Settings(compute_threads=1))
        assert set(pools().values()) == {1}
        assert faiss.omp_get_max_threads() == 1
        apis = {pool["internal_api"] for pool in threadpool_info()}
        assert {"openblas", "openmp"} <= apis  # FAISS's OpenMP and the BLAS copies were seen


def test_zero_leaves_the_libraries_defaults() -> None:
    with threadpool_limits(limits=2):
        limit_compute_threads(Settings(compute_threads=0))
        assert set(pools().values()) == {2}
