"""The fused extraction detector on real-prompt traffic: calibrated on benign users only, it flags
harvesters and campaigns, explains itself, and survives checkpoints and saved calibrations."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from core.events import Event
from core.verdicts import Assessment
from detectors.campaigns import CampaignLinker
from detectors.embedding import PromptEmbedder
from detectors.fusion import BURST_STEP, ExtractionDetector
from detectors.registry import load_calibration, save_calibration
from students.actors import (
    STRATEGIES,
    AttackConfig,
    benign_users,
    multi_account_campaign,
)
from tests.planned import events_of

pytestmark = pytest.mark.models


def stream(detector: ExtractionDetector, events: list[Event], batch: int = 100):
    """Feed events in time order; return each account's assessments with the number of its
    requests seen when each was decided (as the pipeline records it)."""
    history: dict[str, list[tuple[int, Assessment]]] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)
    for start in range(0, len(events), batch):
        updates: dict[str, list[Event]] = defaultdict(list)
        for event in events[start : start + batch]:
            updates[event.account_id].append(event)
        for account_id, items in updates.items():
            seen[account_id] += len(items)
        for account_id, assessment in detector.update_batch(dict(updates)).items():
            new = len(updates.get(account_id, []))
            for step in (assessment.peak, assessment):  # a flag left within the batch first
                if step is not None:
                    decided = seen[account_id] - new + (step.requests_at_label or new)
                    history[account_id].append((decided, step))
    return history


def first_flag(history: list[tuple[int, Assessment]]) -> int | None:
    return next((n for n, a in history if a.label == "extraction"), None)


@pytest.fixture(scope="module")
def embedder() -> PromptEmbedder:
    return PromptEmbedder(max_seq_length=128)


@pytest.fixture(scope="module")
def fitted(embedder: PromptEmbedder) -> ExtractionDetector:
    calibration = events_of(benign_users(80, 260, 14, seed=1, max_tokens=(128, 256)), "cal")
    return ExtractionDetector(embedder=embedder, linker=CampaignLinker()).fit(calibration)


@pytest.fixture(scope="module")
def saved(fitted: ExtractionDetector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calibration")
    save_calibration(fitted, folder)
    return folder


def fresh(saved: Path, embedder: PromptEmbedder) -> ExtractionDetector:
    """A new detector from the saved calibration (FAISS objects do not deep-copy)."""
    detector = ExtractionDetector(embedder=embedder, linker=CampaignLinker())
    return load_calibration(detector, saved)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def evaluation(saved: Path, embedder: PromptEmbedder):
    plans = benign_users(50, 160, 14, seed=2, max_tokens=(128, 256))
    plans += STRATEGIES["dataset_replay"](AttackConfig(budget=100, seed=5, start_day=2))
    plans += STRATEGIES["templated_enumeration"](AttackConfig(budget=100, seed=6, start_day=3))
    plans += multi_account_campaign(
        AttackConfig(budget=480, seed=7, start_day=1, extra={"accounts": 12, "cover_ratio": 1.0})
    )
    actors = {p.account_id: p.actor for p in plans}
    detector = fresh(saved, embedder)
    return actors, stream(detector, events_of(plans, "eval")), detector


def test_calibration_comes_from_benign_accounts_only(fitted: ExtractionDetector) -> None:
    thresholds = fitted.thresholds_
    assert fitted.fitted_accounts_ >= 50
    assert 0 < thresholds["suspicious"] < thresholds["extraction"]
    assert fitted.reference_ is not None and len(fitted.reference_.centroids) >= 8
    assert {"near_duplicate_rate", "coverage", "mmd", "greedy_share"} <= set(fitted.benign_values_)


def test_harvesters_flagged_early_benign_users_never(evaluation) -> None:
    actors, history, _ = evaluation
    benign = [a for a, actor in actors.items() if actor == "benign"]
    flagged_benign = [a for a in benign if first_flag(history[a]) is not None]
    assert not flagged_benign
    for account in ("replay-5", "enum-6"):
        flagged_at = first_flag(history[account])
        assert flagged_at is not None and flagged_at <= 60, (account, flagged_at)


def first_flag_any(history: list[tuple[int, Assessment]]) -> int | None:
    return next((n for n, a in history if a.label != "benign"), None)


def test_one_large_batch_flags_what_a_live_stream_flags(
    saved: Path, embedder: PromptEmbedder
) -> None:
    """An offline replay in one large batch (`distillguard score`) flags the accounts a worker
    polling 100 records at a time flags, at the same request to within one burst step: a
    flag the window leaves again before the batch ends still counts (`Assessment.peak`)."""
    plans = benign_users(40, 120, 10, seed=3, max_tokens=(128, 256))
    plans += STRATEGIES["dataset_replay"](AttackConfig(budget=120, seed=8, start_day=2))
    plans += STRATEGIES["templated_enumeration"](AttackConfig(budget=120, seed=9, start_day=3))
    events = events_of(plans, "batch")
    live = stream(fresh(saved, embedder), events, batch=100)
    whole = stream(fresh(saved, embedder), events, batch=len(events))
    flagged = {a: first_flag_any(h) for a, h in live.items() if first_flag_any(h) is not None}
    assert {"replay-8", "enum-9"} <= set(flagged)
    assert {a: first_flag_any(h) for a, h in whole.items() if first_flag_any(h)}.keys() == (
        flagged.keys()
    )
    for account, at in flagged.items():
        assert abs(first_flag_any(whole[account]) - at) <= BURST_STEP, account


def test_a_harvest_of_short_answers_weighs_less(saved: Path, embedder: PromptEmbedder) -> None:
    """Issue 16: the same replay of a dataset asked for 256-token answers, for 5 tokens (a
    label each: what honest evaluation harnesses and classifiers ask) and with no `max_tokens`
    logged. The short-answer harvest keeps √(5/128) of its evidence and is not flagged; a log
    that does not say keeps it all."""
    plans = benign_users(30, 100, 10, seed=4, max_tokens=(128, 256))
    replay = STRATEGIES["dataset_replay"](AttackConfig(budget=120, seed=10, start_day=2))
    peaks, discounts = {}, {}
    for budget in (256, 5, None):
        asked = [dataclasses.replace(p, max_tokens=budget) for p in replay]
        history = stream(fresh(saved, embedder), events_of(plans + asked, f"budget-{budget}"))
        steps = [a for _, a in history["replay-10"]]
        peaks[budget] = (max(a.score for a in steps), first_flag_any(history["replay-10"]))
        top = max(steps, key=lambda a: a.score)
        discounts[budget] = [r for r in top.reasons if r.signal == "answer_budget"]
    assert peaks[256][1] is not None and peaks[5][1] is None
    assert peaks[5][0] < peaks[256][0] == pytest.approx(peaks[None][0])
    # the analyst is told why: the short answers asked for, and what the evidence counted
    (discount,) = discounts[5]
    assert discount.value == 5 and discount.evidence["weight"] == round((5 / 128) ** 0.5, 4)
    assert discounts[256] == discounts[None] == []


def test_campaign_members_share_a_cluster_and_its_verdict(evaluation) -> None:
    actors, history, detector = evaluation
    members = [a for a, actor in actors.items() if actor == "attack:multi_account_campaign"]
    clusters = {history[m][-1][1].cluster_id for m in members}
    assert len(clusters) == 1 and None not in clusters
    flagged = [m for m in members if first_flag(history[m]) is not None]
    assert len(flagged) >= 0.9 * len(members)
    reasons = {r.signal: r for r in history[members[0]][-1][1].reasons}
    assert reasons["campaign"].evidence["cluster_id"] in clusters
    assert "links" not in reasons["campaign"].evidence  # the pair links stay on the campaign
    # Twelve accounts linked far beyond chance: the coordination is part of the verdict.
    assert reasons["coordination"].value > 10 and reasons["coordination"].contribution > 0
    clusters = detector.drain_clusters()
    assert any(set(cluster.members) >= set(flagged) for cluster in clusters)
    assert all(cluster.evidence["links"] for cluster in clusters if cluster.label != "dissolved")


def test_verdicts_explain_themselves(evaluation) -> None:
    _, history, _ = evaluation
    _, assessment = next(item for item in history["replay-5"] if item[1].label == "extraction")
    assert assessment.reasons and assessment.score >= 0.5
    assert 0 < sum(r.contribution for r in assessment.reasons) <= assessment.score + 1e-6
    top = assessment.reasons[0]
    assert top.evidence and top.evidence["explanation"] and top.evidence["example_prompts"]


def test_checkpointed_state_resumes_identically(saved: Path, embedder: PromptEmbedder) -> None:
    events = events_of(STRATEGIES["dataset_replay"](AttackConfig(budget=40, seed=9)), "state")
    first, rest = events[:25], events[25:]
    original = fresh(saved, embedder)
    original.update("replay-9", first)
    restored = fresh(saved, embedder)
    restored.load("replay-9", orjson.loads(orjson.dumps(original.state("replay-9"))))
    a, b = original.update("replay-9", rest), restored.update("replay-9", rest)
    assert a.label == b.label and a.score == pytest.approx(b.score, abs=0.02)


def test_saved_calibration_scores_the_same(
    fitted: ExtractionDetector, saved: Path, embedder: PromptEmbedder
) -> None:
    loaded = fresh(saved, embedder)
    assert loaded.thresholds_ == fitted.thresholds_
    events = events_of(STRATEGIES["templated_enumeration"](AttackConfig(budget=40, seed=4)), "c")
    a = fitted.update("enum-4", events)  # the only account this test adds to `fitted`
    b = loaded.update("enum-4", events)
    assert a.label == b.label and a.score == pytest.approx(b.score, abs=0.02)


class CountingEmbedder:
    """The real embedder, counting the prompts it is asked to embed."""

    def __init__(self, inner: PromptEmbedder) -> None:
        self.inner, self.prompts = inner, 0

    def __call__(self, prompts: list[str]):
        self.prompts += len(prompts)
        return self.inner(prompts)


def test_tiered_mode_embeds_suspects_not_everyone(saved: Path, embedder: PromptEmbedder) -> None:
    counting = CountingEmbedder(embedder)
    detector = load_calibration(
        ExtractionDetector(embedder=counting, linker=CampaignLinker()), saved
    )
    assert isinstance(detector, ExtractionDetector) and detector.deep_threshold_ >= 1.0
    plans = benign_users(50, 160, 14, seed=3, max_tokens=(128, 256))
    plans += STRATEGIES["dataset_replay"](AttackConfig(budget=100, seed=8, start_day=2))
    events = events_of(plans, "tier")
    history = stream(detector, events)
    benign_events = sum(1 for e in events if e.account_id != "replay-8")
    benign_embedded = counting.prompts - 100  # the attacker's window is embedded in full
    # Budget: honest accounts under suspicion (calibrated at 5% of requests) + 1 in 32 sampled.
    assert benign_embedded <= 0.1 * benign_events, (benign_embedded, benign_events)
    attacker = detector.accounts["replay-8"]
    assert attacker.deep and attacker.embedded_count() == len(attacker.features)
    flagged_at = first_flag(history["replay-8"])
    assert flagged_at is not None and flagged_at <= 60
    signals = {r.signal for r in history["replay-8"][-1][1].reasons}
    assert signals & {"coverage", "dispersion", "mmd", "prada"}, signals
    state = orjson.loads(orjson.dumps(detector.state("replay-8")))
    restored = fresh(saved, embedder)
    restored.load("replay-8", state)
    assert restored.accounts["replay-8"].deep


@pytest.mark.parametrize(("dimensions", "max_features"), [(20, 1.0), (12, 0.5)])
def test_forest_scores_are_scikit_learns_to_the_bit(dimensions: int, max_features: float) -> None:
    """The IsolationForest walked tree by tree (`benign.forest_scores`) gives exactly
    `score_samples`, with every feature and with a subsample of them, one row or many."""
    import numpy as np
    from sklearn.ensemble import IsolationForest

    from detectors.fusion.benign import forest_scores

    rng = np.random.default_rng(11)
    forest = IsolationForest(n_estimators=100, random_state=5, max_features=max_features)
    forest.fit(rng.standard_normal((3000, dimensions)))
    for rows in (1, 23, 1500):
        vectors = rng.standard_normal((rows, dimensions)) * 3
        assert np.array_equal(forest_scores(forest, vectors), forest.score_samples(vectors))
