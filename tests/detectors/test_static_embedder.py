"""The static embedder: MiniLM's wordpiece table, averaged. It must be the mean it claims to be,
keep MiniLM's notion of which prompts are alike, and build its table once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.hashing import prompt_key
from core.settings import Settings
from detectors import embedding
from detectors.embedding import PromptEmbedder, StaticEmbedder
from detectors.fusion import ExtractionDetector
from detectors.registry import build_detector, embedding_model, variant
from students.actors import benign_users
from students.embeddings import CachedEmbedder, with_cached_vectors
from tests.planned import events_of

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def models_dir() -> Path:
    """The test session's shared model cache (`tests/conftest.py`): the table is built once."""
    from tests.conftest import MODELS_DIR

    return MODELS_DIR


@pytest.fixture(scope="module")
def static(models_dir: Path) -> StaticEmbedder:
    return StaticEmbedder(models_dir)


def real_prompts(count: int) -> list[str]:
    """Distinct ShareGPT prompts of the benign users the other detector tests use."""
    prompts = [e.prompt for e in benign_users(30, 40, 3, seed=5, max_tokens=(16, 32))]
    return list(dict.fromkeys(p for p in prompts if p.strip()))[:count]


def test_a_prompt_is_the_unit_mean_of_its_wordpieces(static: StaticEmbedder) -> None:
    prompts = ["How do I bake sourdough bread?", "", "   ", "déjà vu " * 400]
    vectors = static(prompts)
    assert vectors.shape == (4, StaticEmbedder.dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for prompt, vector in zip(prompts, vectors, strict=True):
        ids = static.tokenizer.encode(prompt[: static.max_chars], add_special_tokens=False).ids
        mean = static.table[ids or [static.unknown]].mean(axis=0)
        assert np.allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)
    assert len(static.tokenizer.encode(prompts[3], add_special_tokens=False).ids) == 128
    assert np.array_equal(static(prompts[:1]), vectors[:1])  # batch-independent


def test_static_neighbours_are_minilms_neighbours_on_real_prompts(static: StaticEmbedder) -> None:
    """Real prompts: each one's nearest other prompt under MiniLM is among its five nearest
    under the static table far more often than chance (measured 65 % of 60 prompts, chance 8 %;
    the static cosines of all pairs rank only loosely with MiniLM's, Spearman 0.2, because most
    pairs are unrelated and their order is noise), and a paraphrase stays nearer than an
    unrelated prompt."""
    prompts = real_prompts(60)
    minilm = np.asarray(PromptEmbedder(max_seq_length=128)(prompts))
    ours = static(prompts)
    theirs, mine = minilm @ minilm.T, ours @ ours.T
    np.fill_diagonal(theirs, -np.inf)
    np.fill_diagonal(mine, -np.inf)
    nearest = theirs.argmax(axis=1)
    top_five = np.argsort(-mine, axis=1)[:, :5]
    agreement = np.mean([n in row for n, row in zip(nearest, top_five, strict=True)])
    assert agreement >= 0.4 and agreement >= 4 * 5 / (len(prompts) - 1), agreement
    bread, loaf, physics = static(
        ["how do I bake bread at home", "a recipe for baking a loaf", "what is entanglement"]
    )
    assert bread @ loaf > bread @ physics + 0.2


def test_the_table_is_built_once_and_read_back(
    static: StaticEmbedder, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert StaticEmbedder.table_path(models_dir).exists()

    def rebuilt(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the cached table was not read")

    monkeypatch.setattr(embedding, "wordpiece_table", rebuilt)
    again = StaticEmbedder(models_dir)
    assert np.array_equal(again.table, static.table)


def test_the_setting_chooses_the_static_embedder(tmp_path: Path, models_dir: Path) -> None:
    (tmp_path / "models").symlink_to(models_dir)
    detector = build_detector(
        Settings(data_dir=tmp_path, embedding_tier="full", embedding_model="static")
    )
    assert isinstance(detector.embedder, StaticEmbedder)  # type: ignore[attr-defined]
    assert not detector.tiered  # type: ignore[attr-defined]


def test_auto_is_static_on_a_cpu_and_minilm_where_it_is_affordable() -> None:
    import torch

    on_cpu = not torch.cuda.is_available()
    assert embedding_model(Settings()) == ("static" if on_cpu else "minilm")
    assert variant(Settings()) == ("ours_static" if on_cpu else "ours_full")
    assert embedding_model(Settings(embedding_tier="tiered")) == "minilm"  # tiering rations it
    assert variant(Settings(embedding_tier="tiered")) == "ours"
    assert embedding_model(Settings(embedding_tier="off")) == "none"
    assert variant(Settings(embedding_tier="tiered", embedding_model="static")) is None
    assert variant(Settings(detector="volume")) is None


class NamedEmbedder:
    """An embedder that only says which it is (loading a calibration reads nothing else)."""

    def __init__(self, identity: str) -> None:
        self.identity = identity

    def __call__(self, prompts: list[str]) -> np.ndarray:
        raise AssertionError("loading a calibration embeds nothing")


def test_a_calibration_holds_only_for_the_embedder_it_was_made_with(
    static: StaticEmbedder,
) -> None:
    """Vectors of two embedders are not comparable: a detector refuses a calibration made with
    another, and says what to do; a file saved before calibrations named their embedder was
    made with MiniLM."""
    history = events_of(benign_users(12, 30, 2, seed=3, max_tokens=(64,)), "cal")
    saved = ExtractionDetector(embedder=static).fit(history).calibration()
    assert saved["embedder"] == static.identity
    ExtractionDetector(embedder=NamedEmbedder(static.identity)).load_calibration(saved)
    with pytest.raises(ValueError, match="DG_EMBEDDING_MODEL"):
        ExtractionDetector(embedder=NamedEmbedder("minilm")).load_calibration(saved)
    older = {key: value for key, value in saved.items() if key != "embedder"}
    ExtractionDetector(embedder=NamedEmbedder("minilm")).load_calibration(older)
    with pytest.raises(ValueError, match="made with the 'minilm' embedder"):
        ExtractionDetector(embedder=static).load_calibration(older)


@pytest.mark.skipif(Path("/proc/driver/nvidia").exists(), reason="a GPU machine runs MiniLM")
def test_a_cpu_worker_with_the_default_detector_never_imports_torch(
    tmp_path: Path, models_dir: Path
) -> None:
    """On a CPU the default embedder needs no network, so the worker's process must not pay
    for torch (seconds at start, hundreds of MB): checked in a fresh interpreter."""
    (tmp_path / "models").symlink_to(models_dir)
    script = (
        "import sys\n"
        "from core.settings import Settings\n"
        "from detectors.registry import build_detector\n"
        f"detector = build_detector(Settings(data_dir={str(tmp_path)!r}))\n"
        "detector.embedder(['hello'])\n"
        "print(type(detector.embedder).__name__, 'torch' in sys.modules)\n"
    )
    ran = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    assert ran.stdout.split() == ["StaticEmbedder", "False"], ran.stderr


def test_cached_minilm_vectors_replace_minilm_only(tmp_path: Path) -> None:
    """The benchmarks read MiniLM's vectors from a cache (the model's own); a detector that
    embeds with the static table must keep its own embedder, or it would be measured as
    MiniLM on every prompt and its calibration refused by a worker; and the cache, which
    such a run never asks, is not even read."""
    stored = tmp_path / "vectors.npz"
    stored.write_bytes(b"not an npz: a run that never asks for a vector never reads it")
    cache = CachedEmbedder(stored)  # ~90 MB in the benchmarks: read on first use only
    minilm, static = NamedEmbedder("minilm"), NamedEmbedder(StaticEmbedder.identity)
    assert with_cached_vectors(ExtractionDetector(embedder=static), cache).embedder is static
    assert with_cached_vectors(ExtractionDetector(), cache).embedder is None
    cache.save()  # nothing read, nothing new: the file is left as it is
    assert stored.read_bytes().startswith(b"not an npz")
    assert with_cached_vectors(ExtractionDetector(embedder=minilm), cache).embedder is cache
    np.savez(stored, keys=np.array([prompt_key("hello")]), vectors=np.ones((1, 3), np.float32))
    assert np.array_equal(cache(["hello"])[0], np.ones(3))  # read once asked
