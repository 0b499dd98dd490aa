"""FAISS indexes: near-duplicates across accounts on real prompts, time-window eviction,
snapshot/restore, the benign topic reference and the per-account window helpers."""

from __future__ import annotations

import doctest

import faiss
import numpy as np
import orjson
import pytest

import detectors.index as index_module
from core.hashing import prompt_key
from detectors.features import SIMHASH_BITS, EventFeatures, SimHasher, hamming
from detectors.index import (
    BenignReference,
    RecentPromptIndex,
    SimhashSet,
    window_duplicate_rate,
    window_nearest_similarity,
)
from students.actors import TEMPLATES
from students.prompts import attack_pool, frequent_topics

DAY = 86_400_000
HASHER = SimHasher()


def features(
    prompts: list[str],
    account: str | list[str],
    start_ms: int = 0,
    embeddings: np.ndarray | None = None,
    tag: str = "",
) -> list[EventFeatures]:
    """EventFeatures for prompts, one second apart, from one account or one account each."""
    accounts = [account] * len(prompts) if isinstance(account, str) else account
    hashes = HASHER(prompts)
    return [
        EventFeatures(
            request_id=f"{tag}{accounts[i]}-{i}",
            account_id=accounts[i],
            timestamp_ms=start_ms + 1000 * i,
            prompt=prompt,
            prompt_key=prompt_key(prompt),
            simhash=hashes[i],
            temperature=0.0,
            max_tokens=256,
            n=1,
            logprobs=False,
            followup=False,
            ip_prefix="203.0.114.0/24",
            user_agent="python-requests/2.32",
            embedding=None if embeddings is None else embeddings[i],
        )
        for i, prompt in enumerate(prompts)
    ]


@pytest.fixture(scope="module")
def long_prompts() -> list[str]:
    """Real public-task prompts long enough for SimHash to be specific."""
    return [p for p in attack_pool() if 200 <= len(p) <= 2000]


def unit_vectors(rows: int, seed: int, dim: int = 384) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_docstring_examples_run() -> None:
    assert doctest.testmod(index_module).failed == 0


def test_near_duplicates_of_real_prompts_are_found_and_unrelated_prompts_are_not(
    long_prompts: list[str],
) -> None:
    originals, unrelated = long_prompts[:300], long_prompts[300:1300]
    index = RecentPromptIndex()
    index.add(features(originals, "origin"))
    edited = [p.rstrip() + " Thanks!" for p in originals]
    found = index.neighbours(features(edited, "copier"), k=3, max_hamming=6)
    top = [hits[0].prompt_key if hits else None for hits in found]
    recall = np.mean([key == prompt_key(p) for key, p in zip(top, originals, strict=True)])
    assert recall >= 0.95
    assert all(h.account_id == "origin" and h.kind == "simhash" for hits in found for h in hits)

    false_hits = index.neighbours(features(unrelated, "stranger"), k=3, max_hamming=6)
    assert np.mean([bool(hits) for hits in false_hits]) <= 0.005


def test_template_instances_are_each_others_nearest_neighbours(long_prompts: list[str]) -> None:
    topics = frequent_topics(list(attack_pool()), 40)[10:40]
    filled = [
        (t, template.format(topic=topic))
        for t, template in enumerate(TEMPLATES)
        for topic in topics
    ]
    template_of = {prompt_key(p): t for t, p in filled}
    prompts = [p for _, p in filled]
    index = RecentPromptIndex()
    index.add(features(prompts, [f"acct-{i}" for i in range(len(prompts))]))
    index.add(features(long_prompts[:1000], "pool", tag="pool"))
    found = index.neighbours(
        features(prompts, [f"acct-{i}" for i in range(len(prompts))], tag="q"),
        k=1,
        max_hamming=SIMHASH_BITS,
    )
    assert [template_of.get(hits[0].prompt_key) for hits in found] == [t for t, _ in filled]


def test_own_account_is_excluded_even_when_it_fills_the_first_results() -> None:
    prompt = "Summarize the key facts about the history of the Byzantine Empire, please."
    index = RecentPromptIndex()
    index.add(features([prompt] * 200, "prolific"))
    index.add(features([prompt], "other"))
    hits = index.neighbours(features([prompt], "prolific", tag="q"), k=5)[0]
    assert [(h.account_id, h.distance) for h in hits] == [("other", 0.0)]


def test_replayed_requests_are_stored_once() -> None:
    batch = features(["Write a short essay on volcanoes and their eruptions."], "a")
    index = RecentPromptIndex()
    index.add(batch)
    index.add(batch)
    assert len(index) == 1


def test_items_older_than_the_window_are_evicted(long_prompts: list[str]) -> None:
    vectors = unit_vectors(4, seed=1)
    index = RecentPromptIndex(window_ms=7 * DAY)
    index.add(features(long_prompts[:2], "old", start_ms=0, embeddings=vectors[:2]))
    index.add(features(long_prompts[2:4], "new", start_ms=3 * DAY, embeddings=vectors[2:]))
    queries = features(long_prompts[:4], "query", start_ms=8 * DAY, embeddings=vectors, tag="q")
    assert {h.account_id for hits in index.neighbours(queries) for h in hits} == {"old", "new"}

    index.add(features(["A prompt that only moves the clock forward a week."], "clock", 8 * DAY))
    assert len(index) == 3 and index.embedded_count == 2
    remaining = index.neighbours(queries)
    assert {h.account_id for hits in remaining for h in hits} == {"new"}
    assert {h.kind for hits in remaining for h in hits} == {"simhash", "embedding"}


@pytest.mark.parametrize("nlist", [0, 4])
def test_embedding_neighbours_flat_and_ivf(nlist: int) -> None:
    base = unit_vectors(400, seed=2)
    noisy = base + 0.01 * np.random.default_rng(3).standard_normal(base.shape).astype(np.float32)
    prompts = [f"prompt number {i} about a different subject each time" for i in range(400)]
    index = RecentPromptIndex(nlist=nlist, nprobe=4)
    index.add(features(prompts, "origin", embeddings=base))
    assert isinstance(index._vectors, faiss.IndexIVF) == bool(nlist)
    found = index.embedding_neighbours(features(prompts, "copier", embeddings=noisy), k=1)
    top = [
        (hits[0].prompt_key, prompt_key(p)) for hits, p in zip(found, prompts, strict=True) if hits
    ]
    assert all(found_key == wanted for found_key, wanted in top)
    assert np.mean([bool(h) for h in found]) >= (1.0 if nlist == 0 else 0.9)
    assert all(h[0].distance < 0.05 for h in found if h)
    unrelated = index.embedding_neighbours(features(prompts, "x", embeddings=unit_vectors(400, 9)))
    assert not any(unrelated)


@pytest.mark.parametrize("nlist", [0, 4])
def test_snapshot_restore_gives_identical_results(long_prompts: list[str], nlist: int) -> None:
    vectors = unit_vectors(300, seed=4)
    index = RecentPromptIndex(nlist=nlist)
    index.add(features(long_prompts[:300], [f"a{i % 7}" for i in range(300)], embeddings=vectors))
    queries = features(long_prompts[:300], "query", embeddings=vectors, tag="q")
    restored = RecentPromptIndex(nlist=nlist).restore(index.snapshot())
    assert restored.neighbours(queries, k=4) == index.neighbours(queries, k=4)
    assert len(restored) == len(index) and restored.now_ms == index.now_ms

    later = features(long_prompts[300:310], "later", start_ms=8 * DAY, embeddings=vectors[:10])
    for copy in (index, restored):
        copy.add(later)
    assert restored.neighbours(queries, k=4) == index.neighbours(queries, k=4)
    assert len(restored) == 10


def test_a_checkpoint_with_the_older_simhash_index_type_restores(long_prompts: list[str]) -> None:
    """Checkpoints written before the SimHash codes moved from `IndexBinaryIDMap2` to
    `IndexBinaryIDMap` restore, and search and evict as a new index does."""
    vectors = unit_vectors(200, seed=5)
    stored = features(long_prompts[:200], [f"a{i % 5}" for i in range(200)], embeddings=vectors)
    new = RecentPromptIndex()
    new.add(stored)
    old = RecentPromptIndex()
    old._binary = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(SIMHASH_BITS))
    old.add(stored)
    restored = RecentPromptIndex().restore(old.snapshot())
    assert isinstance(restored._binary, faiss.IndexBinaryIDMap2)
    queries = features(long_prompts[:200], "query", embeddings=vectors, tag="q")
    assert restored.neighbours(queries, k=4) == new.neighbours(queries, k=4)
    later = features(long_prompts[200:205], "later", start_ms=8 * DAY, embeddings=vectors[:5])
    for index in (new, restored):
        index.add(later)  # evicts every earlier item
    assert len(restored) == len(new) == 5
    assert restored.neighbours(queries, k=4) == new.neighbours(queries, k=4)


@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="needs a CUDA FAISS build and a GPU")
def test_gpu_replica_matches_cpu_search() -> None:
    vectors = unit_vectors(500, seed=5)
    prompts = [f"gpu prompt {i}" for i in range(500)]
    cpu, gpu = RecentPromptIndex(use_gpu=False), RecentPromptIndex(use_gpu=True)
    for index in (cpu, gpu):
        index.add(features(prompts, "origin", embeddings=vectors))
    queries = features(prompts, "q", embeddings=vectors, tag="q")
    assert gpu.embedding_neighbours(queries, k=3) == cpu.embedding_neighbours(queries, k=3)


def test_benign_reference_assigns_and_round_trips_through_json() -> None:
    centres = unit_vectors(5, seed=6, dim=32)
    noise = 0.05 * np.random.default_rng(7).standard_normal((500, 32)).astype(np.float32)
    points = np.repeat(centres, 100, axis=0) + noise
    reference = BenignReference(k=5, seed=1).fit(points)
    ids, similarity = reference.assign(points)
    assert len(set(ids.tolist())) == 5 and similarity.min() > 0.8
    assert all(len(set(ids[i * 100 : (i + 1) * 100].tolist())) == 1 for i in range(5))
    assert reference.coverage(points[:100]) == 1 and reference.coverage(points) == 5

    again = BenignReference.from_dict(orjson.loads(orjson.dumps(reference.to_dict())))
    ids_again, similarity_again = again.assign(points)
    assert np.array_equal(ids, ids_again) and np.allclose(similarity, similarity_again)
    assert BenignReference(k=64).fit(points[:10]).centroids_.shape == (10, 32)


def test_simhash_set_membership() -> None:
    common = SimhashSet([0, 2**64 - 1])
    assert common.contains([1, 0b111, 0b1111 << 40], max_hamming=2).tolist() == [True, False, False]
    assert SimhashSet().contains([5], max_hamming=64).tolist() == [False]


def brute_duplicate_rate(hashes: list[int], max_hamming: int) -> float:
    earlier = [
        any(hamming(h, hashes[j]) <= max_hamming for j in range(i)) for i, h in enumerate(hashes)
    ]
    return sum(earlier) / len(hashes)


def test_window_duplicate_rate_on_templates_and_real_prompts(long_prompts: list[str]) -> None:
    topics = frequent_topics(list(attack_pool()), 40)
    templated = HASHER([TEMPLATES[1].format(topic=t) for t in topics])
    human = HASHER(long_prompts[:64])
    assert window_duplicate_rate(templated, 12) > 0.8
    assert window_duplicate_rate(human, 12) < 0.05
    assert window_duplicate_rate(human + human[:16], 0) == 16 / 80
    for hashes in (templated, human, templated[:20] + human[:20]):
        assert window_duplicate_rate(hashes, 12) == brute_duplicate_rate(hashes, 12)
    assert window_duplicate_rate([], 3) == 0.0 and window_duplicate_rate([7], 3) == 0.0


def test_window_nearest_similarity_matches_brute_force() -> None:
    vectors = unit_vectors(512, seed=8, dim=64)
    vectors[10] = vectors[3]  # an exact repeat: its nearest other row is its twin
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = window_nearest_similarity(vectors)
    assert np.allclose(nearest, similarity.max(axis=1), atol=1e-5)
    assert nearest[3] == pytest.approx(1.0) and nearest[10] == pytest.approx(1.0)
    assert np.isnan(window_nearest_similarity(vectors[:1])).all()
    assert window_nearest_similarity(np.empty((0, 64), np.float32)).shape == (0,)
