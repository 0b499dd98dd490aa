"""Signal arithmetic that must not change when it is made faster."""

from __future__ import annotations

import numpy as np

from detectors.signals import nearest_earlier


def test_prada_nearest_earlier_distance_equals_the_row_by_row_minimum() -> None:
    """The masked reduction PRADA uses gives exactly the per-row minimum it replaced."""
    rng = np.random.default_rng(3)
    for m in (2, 3, 17, 256):
        vectors = rng.standard_normal((m, 384))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (vectors @ vectors.T)))
        by_row = np.array([distances[i, :i].min() for i in range(1, m)])
        assert np.array_equal(nearest_earlier(distances), by_row)
