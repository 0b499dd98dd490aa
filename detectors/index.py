"""FAISS indexes over prompts: the global recent-prompt index, the benign topic reference, and
window helpers for per-account signals.

Campaign linking needs "who else sent this (or nearly this) prompt lately?" across all accounts,
which a per-account detector cannot answer; `RecentPromptIndex` answers it from SimHash codes
(every event, Hamming distance) and neural embeddings (some events, inner product), forgets what
is older than its window, and snapshots to bytes so a restarted worker resumes. The float index
is searched on a GPU replica when FAISS sees one; the CPU index stays the source of truth.
"""

from __future__ import annotations

import heapq
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, Self

import faiss
import numpy as np
import orjson

from core.timeutil import DAY_MS
from detectors.features import SIMHASH_BITS, EventFeatures

EMBEDDING_DIMENSION = 384
GPU_MAX_K = 2048  # FAISS GPU k-selection limit
PARALLEL_BYTES = 2**30  # below this much scanned data a search runs on one thread

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def simhash_codes(simhashes: Sequence[int]) -> np.ndarray:
    """64-bit SimHash integers as FAISS binary codes, shape (n, 8) uint8."""
    values = np.asarray(list(simhashes), dtype=np.uint64).reshape(-1, 1)
    return np.ascontiguousarray(values.view(np.uint8))


@contextmanager
def _serial_if_small(queries: int, stored: int, code_bytes: int) -> Iterator[None]:
    """Run a small search on one OpenMP thread: thread start-up and barrier waits cost more than
    the scan (on a busy 2-core machine ~40 ms against ~0.2 ms for 10 queries over 5k codes).
    FAISS's thread count is process-wide, so it is restored at once."""
    if queries * stored * code_bytes >= PARALLEL_BYTES:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Float32, C-contiguous, L2-normalised rows: inner product is then cosine."""
    matrix = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32).copy()
    faiss.normalize_L2(matrix)
    return matrix


class Neighbour(NamedTuple):
    """A recent prompt of another account near the query."""

    account_id: str
    distance: float  # Hamming bits (kind "simhash") or 1 - cosine (kind "embedding")
    prompt_key: str
    kind: str
    timestamp_ms: int


# A search result (item id, raw distance, the query's account) → the neighbour it is, or None
# when it is the query's own account's prompt.
MakeFn = Callable[[int, float, str], Neighbour | None]


class _Item(NamedTuple):
    request_id: str
    account_id: str
    timestamp_ms: int
    prompt_key: str
    embedded: bool


def _scan(
    distances: np.ndarray,
    ids: np.ndarray,
    owner: str,
    k: int,
    accept: Callable[[float], bool],
    make: MakeFn,
) -> tuple[list[Neighbour], bool]:
    """Other accounts' hits in one query's sorted results; `complete` is False when every result
    passed the threshold but fewer than k were others' (a wider search may find more)."""
    hits: list[Neighbour] = []
    for raw, item_id in zip(distances.tolist(), ids.tolist(), strict=True):
        if item_id < 0 or not accept(raw):
            return hits, True
        hit = make(item_id, raw, owner)
        if hit is not None:
            hits.append(hit)
            if len(hits) == k:
                return hits, True
    return hits, False


def _knn_excluding(
    search: SearchFn,
    queries: np.ndarray,
    owners: Sequence[str],
    k: int,
    limit: int,
    accept: Callable[[float], bool],
    make: MakeFn,
) -> list[list[Neighbour]]:
    """k-NN that skips the query's own account: a prolific account's own prompts can fill the
    first k slots, so queries left short are searched again, four times wider, up to `limit`."""
    results: list[list[Neighbour]] = [[] for _ in owners]
    pending = list(range(len(owners)))
    width = min(limit, 4 * k + 8)
    while pending:
        distances, ids = search(queries[pending], width)
        wider = []
        for row, query in enumerate(pending):
            results[query], complete = _scan(
                distances[row], ids[row], owners[query], k, accept, make
            )
            if not complete:
                wider.append(query)
        if width >= limit:
            break
        pending, width = wider, min(limit, width * 4)
    return results


class RecentPromptIndex:
    """Recent prompts of every account, searchable by SimHash and by embedding.

    Each stored item maps to (account_id, timestamp_ms, prompt_key); items older than
    `window_ms` behind the newest timestamp seen are evicted on `add`. `nlist > 0` switches the
    embedding index from exact inner product to IVF once `39 * nlist` vectors are there to train on.

    >>> from detectors.features import SimHasher
    >>> hasher, index = SimHasher(), RecentPromptIndex()
    >>> prompts = ["Write a step-by-step tutorial about sourdough bread baking at home.",
    ...            "Write a step-by-step tutorial about sourdough bread baking at home!",
    ...            "What is the capital of Australia?"]
    >>> def feature(i, account):
    ...     return EventFeatures(f"r{i}", account, i, prompts[i], f"k{i}", hasher([prompts[i]])[0],
    ...                          0.0, 256, 1, False, False, "203.0.114.0/24", "python-requests")
    >>> index.add([feature(0, "acct-a"), feature(2, "acct-c")])
    >>> [(n.account_id, n.prompt_key) for n in index.neighbours([feature(1, "acct-b")])[0]]
    [('acct-a', 'k0')]
    """

    def __init__(
        self,
        window_ms: int = 7 * DAY_MS,
        dimension: int = EMBEDDING_DIMENSION,
        nlist: int = 0,
        nprobe: int = 16,
        use_gpu: bool | None = None,
    ) -> None:
        self.window_ms = window_ms
        self.dimension = dimension
        self.nlist = nlist
        self.nprobe = nprobe
        self.use_gpu = use_gpu  # None: use a GPU when this FAISS build sees one
        self._gpu_resources: Any = None  # one per index: each holds a scratch-memory pool
        self._reset()

    # -- storage ------------------------------------------------------------------------------
    def _reset(self) -> None:
        # IDMap, not IDMap2: the same searches, and a removal does not rebuild a reverse map of
        # every id (0.09 against 0.32 ms to evict and add 7 of 7,000 codes; the linker evicts in
        # most event-time slices). Checkpoints written with IDMap2 still load and work.
        self._binary = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(SIMHASH_BITS))
        self._vectors: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))
        self._items: dict[int, _Item] = {}
        self._by_request: dict[str, int] = {}
        self._expiry: list[tuple[int, int]] = []  # min-heap of (timestamp_ms, id)
        self._next_id = 0
        self._gpu: Any = None
        self.now_ms = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def embedded_count(self) -> int:
        return int(self._vectors.ntotal)

    def _gpu_enabled(self) -> bool:
        if self.use_gpu is not None:
            return self.use_gpu
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0

    def add(self, features: Sequence[EventFeatures]) -> None:
        """Store new events (a replayed request_id is ignored), then evict what fell out of the
        window."""
        fresh = [f for f in features if f.request_id not in self._by_request]
        fresh = list({f.request_id: f for f in fresh}.values())
        if not fresh:
            return
        ids = np.arange(self._next_id, self._next_id + len(fresh), dtype=np.int64)
        self._next_id += len(fresh)
        for item_id, f in zip(ids.tolist(), fresh, strict=True):
            embedded = f.embedding is not None
            self._items[item_id] = _Item(
                f.request_id, f.account_id, f.timestamp_ms, f.prompt_key, embedded
            )
            self._by_request[f.request_id] = item_id
            heapq.heappush(self._expiry, (f.timestamp_ms, item_id))
        self._binary.add_with_ids(simhash_codes([f.simhash for f in fresh]), ids)
        embedded = [i for i, f in enumerate(fresh) if f.embedding is not None]
        if embedded:
            vectors = _unit_rows(np.stack([fresh[i].embedding for i in embedded]))
            self._add_vectors(vectors, ids[embedded])
        self.now_ms = max(self.now_ms, max(f.timestamp_ms for f in fresh))
        self.evict()

    def _add_vectors(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        self._vectors.add_with_ids(vectors, ids)
        if self._gpu is not None:
            self._gpu.add_with_ids(vectors, ids)
        if self.nlist and not isinstance(self._vectors, faiss.IndexIVF):
            self._maybe_train_ivf()

    def _maybe_train_ivf(self) -> None:
        """Exact search until there is enough data to train IVF centroids, then move over."""
        if self._vectors.ntotal < 39 * self.nlist:
            return
        flat = faiss.downcast_index(self._vectors.index)
        vectors = flat.reconstruct_n(0, flat.ntotal)
        ids = faiss.vector_to_array(self._vectors.id_map).astype(np.int64)
        ivf = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(self.dimension),
            self.dimension,
            self.nlist,
            faiss.METRIC_INNER_PRODUCT,
        )
        ivf.train(vectors)
        ivf.add_with_ids(vectors, ids)
        ivf.nprobe = self.nprobe
        self._vectors, self._gpu = ivf, None

    def evict(self, now_ms: int | None = None) -> int:
        """Forget items older than the window behind `now_ms` (default: newest seen)."""
        if now_ms is not None:
            self.now_ms = max(self.now_ms, now_ms)
        cutoff = self.now_ms - self.window_ms
        stale = []
        while self._expiry and self._expiry[0][0] < cutoff:
            stale.append(heapq.heappop(self._expiry)[1])
        if not stale:
            return 0
        embedded = [i for i in stale if self._items[i].embedded]
        self._binary.remove_ids(np.asarray(stale, dtype=np.int64))
        if embedded:
            self._vectors.remove_ids(np.asarray(embedded, dtype=np.int64))
            self._gpu = None  # GPU indexes cannot remove: rebuild the replica on next search
        for item_id in stale:
            del self._by_request[self._items.pop(item_id).request_id]
        return len(stale)

    # -- search -------------------------------------------------------------------------------
    def _search_vectors(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not self._gpu_enabled():
            with _serial_if_small(len(queries), self._vectors.ntotal, 4 * self.dimension):
                return self._vectors.search(queries, k)
        if self._gpu is None:
            if self._gpu_resources is None:
                self._gpu_resources = faiss.StandardGpuResources()
            self._gpu = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._vectors)
        return self._gpu.search(queries, k)

    def _search_binary(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with _serial_if_small(len(queries), self._binary.ntotal, SIMHASH_BITS // 8):
            return self._binary.search(queries, k)

    def _maker(self, kind: str, to_distance: Callable[[float], float]) -> MakeFn:
        def make(item_id: int, raw: float, owner: str) -> Neighbour | None:
            item = self._items[item_id]
            if item.account_id == owner:
                return None  # checked before building: a prolific account's own hits are most
            return Neighbour(
                item.account_id, to_distance(raw), item.prompt_key, kind, item.timestamp_ms
            )

        return make

    def simhash_neighbours(
        self, features: Sequence[EventFeatures], k: int = 10, max_hamming: int = 6
    ) -> list[list[Neighbour]]:
        """Per query, up to k other accounts' prompts within `max_hamming` bits, nearest first."""
        if not features or not self._binary.ntotal:
            return [[] for _ in features]
        return _knn_excluding(
            self._search_binary,
            simhash_codes([f.simhash for f in features]),
            [f.account_id for f in features],
            k,
            int(self._binary.ntotal),
            lambda bits: bits <= max_hamming,
            self._maker("simhash", float),
        )

    def embedding_neighbours(
        self, features: Sequence[EventFeatures], k: int = 10, min_cosine: float = 0.9
    ) -> list[list[Neighbour]]:
        """Per query with an embedding, up to k other accounts' prompts at cosine ≥ min_cosine."""
        results: list[list[Neighbour]] = [[] for _ in features]
        rows = [i for i, f in enumerate(features) if f.embedding is not None]
        if not rows or not self._vectors.ntotal:
            return results
        limit = int(self._vectors.ntotal)
        found = _knn_excluding(
            self._search_vectors,
            _unit_rows(np.stack([features[i].embedding for i in rows])),
            [features[i].account_id for i in rows],
            k,
            min(limit, GPU_MAX_K) if self._gpu_enabled() else limit,
            lambda cosine: cosine >= min_cosine,
            self._maker("embedding", lambda cosine: 1.0 - cosine),
        )
        for row, hits in zip(rows, found, strict=True):
            results[row] = hits
        return results

    def neighbours(
        self,
        features: Sequence[EventFeatures],
        k: int = 10,
        max_hamming: int | None = 6,
        min_cosine: float | None = 0.9,
    ) -> list[list[Neighbour]]:
        """Per query, other accounts' near-duplicates: up to k by SimHash, then up to k by
        embedding (queries without one get SimHash only); `None` turns a kind off."""
        merged: list[list[Neighbour]] = [[] for _ in features]
        if max_hamming is not None:
            for row, hits in enumerate(self.simhash_neighbours(features, k, max_hamming)):
                merged[row].extend(hits)
        if min_cosine is not None:
            for row, hits in enumerate(self.embedding_neighbours(features, k, min_cosine)):
                merged[row].extend(hits)
        return merged

    # -- persistence --------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Both indexes and the id → metadata map, as one blob for a checkpoint."""
        meta = {
            "now_ms": self.now_ms,
            "next_id": self._next_id,
            "items": [[i, *item] for i, item in self._items.items()],
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            binary=faiss.serialize_index_binary(self._binary),
            vectors=faiss.serialize_index(self._vectors),
            meta=np.frombuffer(orjson.dumps(meta), dtype=np.uint8),
        )
        return buffer.getvalue()

    def restore(self, data: bytes) -> Self:
        """Replace this index's contents with a `snapshot`; parameters stay this object's."""
        with np.load(io.BytesIO(data), allow_pickle=False) as blob:
            binary = faiss.deserialize_index_binary(blob["binary"])
            vectors = faiss.deserialize_index(blob["vectors"])
            meta = orjson.loads(blob["meta"].tobytes())
        self._reset()
        self._binary, self._vectors = binary, vectors
        self.now_ms, self._next_id = meta["now_ms"], meta["next_id"]
        for item_id, *fields in meta["items"]:
            item = _Item(*fields)
            self._items[item_id] = item
            self._by_request[item.request_id] = item_id
            self._expiry.append((item.timestamp_ms, item_id))
        heapq.heapify(self._expiry)
        return self


class SimhashSet:
    """A fixed set of SimHashes that answers "within r bits of any member?" (e.g. prompts
    honest users commonly send, which must not count as evidence of coordination).

    >>> SimhashSet([0b1111]).contains([0b1110, 1 << 40], max_hamming=1).tolist()
    [True, False]
    """

    def __init__(self, simhashes: Iterable[int] = ()) -> None:
        self.simhashes = sorted(set(simhashes))
        self._index = faiss.IndexBinaryFlat(SIMHASH_BITS)
        if self.simhashes:
            self._index.add(simhash_codes(self.simhashes))

    def __len__(self) -> int:
        return len(self.simhashes)

    def contains(self, simhashes: Sequence[int], max_hamming: int) -> np.ndarray:
        if not self.simhashes or not len(simhashes):
            return np.zeros(len(simhashes), dtype=bool)
        with _serial_if_small(len(simhashes), len(self.simhashes), SIMHASH_BITS // 8):
            bits, _ = self._index.search(simhash_codes(simhashes), 1)
        return bits[:, 0] <= max_hamming


class BenignReference:
    """Spherical k-means centroids of benign prompt embeddings: the topics honest users visit.

    An extraction harvest spreads over many of them at once ("coverage"); a person mostly stays
    near a few. `to_dict`/`from_dict` keep the centroids in a JSON calibration file.

    >>> rng = np.random.default_rng(0)
    >>> centres = _unit_rows(rng.standard_normal((3, 8)))
    >>> points = _unit_rows(np.repeat(centres, 50, axis=0) + 0.05 * rng.standard_normal((150, 8)))
    >>> reference = BenignReference(k=3, seed=1).fit(points)
    >>> ids, similarity = reference.assign(points)
    >>> len(set(ids[:50].tolist())), len(set(ids.tolist())), bool(similarity.min() > 0.9)
    (1, 3, True)
    """

    def __init__(self, k: int = 64, niter: int = 25, nredo: int = 3, seed: int = 1234) -> None:
        self.k = k
        self.niter = niter
        self.nredo = nredo  # k-means restarts; the best objective wins (one run can merge topics)
        self.seed = seed

    def fit(self, embeddings: np.ndarray, k: int | None = None) -> Self:
        """Cluster benign embeddings; `k` (default `self.k`) is capped at the number of rows."""
        data = _unit_rows(embeddings)
        clusters = max(1, min(k or self.k, len(data)))
        runs = [self._kmeans(data, clusters, self.seed + run) for run in range(self.nredo)]
        self._set_centroids(max(runs, key=lambda run: run[1])[0])
        self.training_rows_ = len(data)
        return self

    def _kmeans(self, data: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, float]:
        """One spherical k-means run: centroids and the mean cosine of rows to their centroid.
        Restarts are compared here: FAISS's own `nredo` kept a visibly worse spherical run on
        well-separated test data (mean cosine 0.87 against 0.96)."""
        kmeans = faiss.Kmeans(data.shape[1], k, niter=self.niter, seed=seed, spherical=True)
        kmeans.train(data)
        similarity, _ = kmeans.index.search(data, 1)
        return kmeans.centroids, float(similarity.mean())

    def _set_centroids(self, centroids: np.ndarray) -> None:
        self.centroids_ = _unit_rows(centroids)
        self._index = faiss.IndexFlatIP(self.centroids_.shape[1])
        self._index.add(self.centroids_)

    def assign(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest centroid id and cosine similarity to it, per row."""
        if len(vectors) == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        with _serial_if_small(len(vectors), self._index.ntotal, 4 * self._index.d):
            similarity, ids = self._index.search(_unit_rows(vectors), 1)
        return ids[:, 0], similarity[:, 0]

    def coverage(self, vectors: np.ndarray) -> int:
        """How many distinct topic centroids the rows hit."""
        return len(set(self.assign(vectors)[0].tolist()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "niter": self.niter,
            "nredo": self.nredo,
            "seed": self.seed,
            "training_rows": self.training_rows_,
            "centroids": self.centroids_.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenignReference:
        reference = cls(k=data["k"], niter=data["niter"], nredo=data["nredo"], seed=data["seed"])
        reference._set_centroids(np.asarray(data["centroids"], dtype=np.float32))
        reference.training_rows_ = data["training_rows"]
        return reference


# --- per-account window helpers ----------------------------------------------------------------
def window_duplicate_rate(simhashes: Sequence[int] | np.ndarray, max_hamming: int) -> float:
    """Share of prompts with a near-duplicate earlier in the window: templated harvests repeat
    a skeleton, people rarely repeat themselves.

    >>> window_duplicate_rate([0b1111, 0b1110, 1 << 40, 0b1111], max_hamming=1)
    0.5
    """
    if len(simhashes) < 2:
        return 0.0
    # A window is at most a few hundred prompts: every pair's distance in numpy is cheaper than
    # building a FAISS index and setting its thread count, on every assessment of every account.
    values = np.asarray(simhashes, dtype=np.uint64)
    near = np.bitwise_count(values[:, None] ^ values[None, :]) <= max_hamming
    with_earlier = np.tril(near, k=-1).any(axis=1)
    return float(np.count_nonzero(with_earlier) / len(values))


def window_nearest_similarity(embeddings: np.ndarray) -> np.ndarray:
    """Each row's highest cosine to any other row (NaN for a lone row): PRADA-style distance
    statistics and paraphrase detection both start from it.

    >>> window_nearest_similarity(np.array([[1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32))
    array([0.8, 0.8, 0.6], dtype=float32)
    """
    vectors = _unit_rows(embeddings) if len(embeddings) else np.empty((0, 1), np.float32)
    if len(vectors) < 2:
        return np.full(len(vectors), np.nan, dtype=np.float32)
    with _serial_if_small(len(vectors), len(vectors), vectors.itemsize * vectors.shape[1]):
        similarity, ids = faiss.knn(vectors, vectors, 2, metric=faiss.METRIC_INNER_PRODUCT)
    is_self = ids[:, 0] == np.arange(len(vectors))
    return np.where(is_self, similarity[:, 1], similarity[:, 0]).astype(np.float32)
