"""Signal arithmetic that must not change when it is made faster."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import shapiro

from detectors.signals import (
    Reference,
    Window,
    coverage,
    dispersion,
    lifetime_topic_breadth,
    mmd,
    nearest_earlier,
    prada,
    rbf,
)
from detectors.sketches import Lifetime


def unit_distances(vectors: np.ndarray) -> np.ndarray:
    """Euclidean distances between unit vectors, as PRADA computes them."""
    return np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (vectors @ vectors.T)))


def test_prada_nearest_earlier_distance_equals_the_row_by_row_minimum() -> None:
    """The masked reduction PRADA uses gives exactly the per-row minimum it replaced."""
    rng = np.random.default_rng(3)
    for m in (2, 3, 17, 256):
        vectors = rng.standard_normal((m, 384))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        distances = unit_distances(vectors)
        by_row = np.array([distances[i, :i].min() for i in range(1, m)])
        assert np.array_equal(nearest_earlier(distances), by_row)


def test_one_far_off_prompt_does_not_make_a_window_look_like_a_harvest() -> None:
    """PRADA judges the shape of the bulk of its nearest distances. An honest window of prompts
    scattered about one theme keeps its statistic when a prompt unlike every other enters it
    (on every distance, 1 − W triples); a window half of whose prompts are close variations of
    earlier ones (two kinds of distance) still departs from normal."""
    rng = np.random.default_rng(11)
    theme = np.eye(384)[0]
    scatter = np.zeros((255, 384))
    scatter[:, :32] = 0.3 * rng.standard_normal((255, 32))
    reference = Reference(np.eye(384)[:4], np.eye(384)[:8], bandwidth=1.0)

    def statistics(rows: np.ndarray) -> tuple[float, float]:
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        every = 1 - shapiro(nearest_earlier(unit_distances(rows))).statistic
        return prada(window_of(rows), reference), every

    ordinary = theme + scatter
    calm, calm_every = statistics(ordinary)
    far = ordinary.copy()
    far[200] = -theme  # one prompt unlike anything else in the window
    outlier, outlier_every = statistics(far)
    half = ordinary.copy()
    nudges = 0.02 * scatter[128:] / 0.3  # a fifteenth of the theme's own scatter
    half[128:] = half[rng.integers(0, 128, 127)] + nudges  # close variations of earlier prompts
    harvest, _ = statistics(half)
    assert outlier_every > 2.5 * calm_every  # every distance: the one far prompt drags W down
    assert outlier < 1.6 * calm  # the bulk: barely moved
    assert harvest > 4 * outlier_every  # a harvest's shape is more than one far prompt


def unit_rows(rng: np.random.Generator, m: int, d: int = 384) -> np.ndarray:
    vectors = rng.standard_normal((m, d)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def window_of(embeddings: np.ndarray) -> Window:
    zeros = np.zeros(len(embeddings))
    flags = zeros.astype(bool)
    return Window(
        zeros.astype(np.int64), zeros.astype(np.uint64), flags, flags, flags, flags,
        zeros.astype(np.float32), ["en"] * len(embeddings), flags, embeddings, Lifetime(),
    )  # fmt: skip


def test_embedding_signals_sharing_one_similarity_matrix_equal_their_definitions() -> None:
    """Dispersion, MMD and PRADA read one cached similarity matrix, coverage and topic breadth
    one topic assignment: each still equals its textbook formula computed on its own."""
    rng = np.random.default_rng(8)
    x, sample, centroids = unit_rows(rng, 200), unit_rows(rng, 64), unit_rows(rng, 16)
    reference = Reference(centroids, sample, bandwidth=1.1)
    window = window_of(x)
    m = len(x)
    off_diagonal = ~np.eye(m, dtype=bool)
    assert dispersion(window, reference) == pytest.approx(1 - (x @ x.T)[off_diagonal].mean())
    kxx, kxy = rbf(x, x, 1.1), rbf(x, sample, 1.1)
    expected_mmd = kxx[off_diagonal].mean() + reference.sample_self_kernel - 2 * kxy.mean()
    assert mmd(window, reference) == pytest.approx(expected_mmd, abs=1e-6)  # float32 sums
    distances = unit_distances(x)
    nearest = sorted(distances[i, :i].min() for i in range(1, m))[1:-1]  # 1 % of 199 each end
    assert prada(window, reference) == pytest.approx(1 - shapiro(nearest).statistic)
    topics = np.argmax(x @ centroids.T, axis=1)
    assert coverage(window, reference) == len(set(topics)) / m
    assert lifetime_topic_breadth(window, reference) == len(set(topics))
    other = unit_rows(rng, 5)  # another reference's centroids: assigned afresh, not cached
    assert window.topics(other).tolist() == np.argmax(x @ other.T, axis=1).tolist()


def test_mmd_remembers_each_prompts_cross_term_under_one_reference() -> None:
    """A deep account is rescored on every request: each prompt's kernel to the benign sample is
    computed once per reference (by prompt key), and the statistic does not change."""
    rng = np.random.default_rng(9)
    x, sample = unit_rows(rng, 50), unit_rows(rng, 32)
    reference = Reference(unit_rows(rng, 4), sample, bandwidth=0.9)
    fresh = mmd(window_of(x), reference)  # no keys: nothing remembered
    assert reference._kernel_means == {}
    keyed = window_of(x)
    keyed.embedded_keys = [f"{i:016x}" for i in range(len(x))]
    assert mmd(keyed, reference) == pytest.approx(fresh, abs=1e-7)
    assert len(reference._kernel_means) == len(x)
    # The window moves on: its prompts' remembered terms are read, not recomputed (one of them,
    # tampered with, shifts the statistic by exactly its share).
    reference._kernel_means[keyed.embedded_keys[10]] += 0.5
    later = window_of(x[10:])
    later.embedded_keys = keyed.embedded_keys[10:]
    expected = mmd(window_of(x[10:]), reference) - 2 * 0.5 / 40
    assert mmd(later, reference) == pytest.approx(expected, abs=1e-6)
