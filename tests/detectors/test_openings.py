"""The `unusual_openings` signal: how a prompt opens (its first words, fillers masked), which
openings a benign population uses, and each account judged by the other accounts' use."""

from __future__ import annotations

import random

import orjson

from core.events import Event
from detectors.campaigns.skeletons import opening_key
from detectors.corpus import benign_conversations
from detectors.features import EventFeatures
from detectors.fusion import ExtractionDetector
from detectors.fusion.benign import UsualOpenings
from students.actors import PlannedRequest, question_prompts
from tests.planned import events_of

FRAME = "Answer the question using only the context below. If the context is not enough, just say"


def test_an_opening_is_the_first_words_of_the_first_line_with_fillers_masked() -> None:
    stony = opening_key("Summarize everything important about Stony Brook University in detail.")
    assert stony != ""
    assert stony == opening_key("Summarize everything important about Final Fantasy VII in detail.")
    assert stony != opening_key("Summarize the meeting notes below in three bullet points.")
    # sixteen words and the first line only: a wrapper opens the same whatever it wraps
    long = opening_key(f'{FRAME} "I don\'t know".\n\nContext:\n[1] (Paris) capital of France')
    assert long == opening_key(f"{FRAME} so.\nQuestion: who wrote Hamlet?") != ""
    haiku = opening_key("Write a haiku about the sea")
    assert opening_key("\n\n  Write a haiku about the sea") == haiku  # leading blank lines
    assert opening_key("Hi Bob!") == "" and opening_key(" \n ") == ""  # says nothing


def feature(account: str, opening: str) -> EventFeatures:
    return EventFeatures(
        request_id=f"{account}-{opening}",
        account_id=account,
        timestamp_ms=0,
        prompt="",
        prompt_key="",
        simhash=0,
        temperature=None,
        max_tokens=None,
        n=1,
        logprobs=False,
        followup=False,
        ip_prefix="",
        user_agent="",
        opening=opening,
    )


def test_an_opening_is_usual_where_two_other_benign_accounts_use_it() -> None:
    uses = [("a", "x"), ("b", "x"), ("c", "x"), ("a", "y"), ("b", "y"), ("a", "z"), ("a", "")]
    usual = UsualOpenings.fit([feature(a, k) for a, k in uses], accounts=2)
    assert not any(usual.unusual(feature(who, "x")) for who in ("a", "b", "c", "new"))
    # two users: each of them has one other only, anyone else has two
    assert usual.unusual(feature("a", "y")) and usual.unusual(feature("b", "y"))
    assert not usual.unusual(feature("new", "y"))
    assert all(usual.unusual(feature(who, key)) for who, key in [("a", "z"), ("new", "w")])
    assert not usual.unusual(feature("new", ""))  # an opening that says nothing is no evidence
    assert UsualOpenings.from_json(orjson.loads(orjson.dumps(usual.to_json()))) == usual
    assert UsualOpenings().unusual(feature("a", "x"))  # uncalibrated: every opening is unusual


APPS = (
    "Translate the following message into French. Return only the translation.\n\n{}",
    "Classify the customer message below as billing, technical or other. Reply with one word."
    "\n\n{}",
    "Reply to the customer in under three sentences using a friendly tone.\n\nCustomer: {}",
)
START_MS = 1_800_000_000_000


def templated(accounts: int, per_account: int, seed: int, prefix: str) -> list[PlannedRequest]:
    """Honest app traffic: each account wraps real ShareGPT openers in its app's template."""
    rng = random.Random(seed)
    openers = [c.user_prompts[0] for c in benign_conversations()[:3000] if c.user_prompts]
    return [
        PlannedRequest(
            "benign",
            f"{prefix}-{a}",
            START_MS + rng.randrange(7 * 86_400_000),
            (("user", APPS[a % len(APPS)].format(rng.choice(openers))),),
        )
        for a in range(accounts)
        for _ in range(per_account)
    ]


def unusual_share(detector: ExtractionDetector, events: list[Event]) -> float:
    account = events[0].account_id
    detector.update(account, events)
    values, _, _ = detector._values(detector.accounts[account])
    return values["unusual_openings"]


def test_prompts_worded_unlike_the_populations_apps_are_unusual_and_surprising() -> None:
    """Calibrated on honest apps' traffic, a new account of one of those apps opens as the
    population does and an account sending bare real questions does not; the detector finds the
    latter's share far in the benign tail."""
    detector = ExtractionDetector().fit(events_of(templated(30, 20, seed=1, prefix="h"), "cal"))
    app_user = events_of(templated(1, 40, seed=2, prefix="new"), "app")
    questions = question_prompts()[:40]
    asker = events_of(
        [
            PlannedRequest("attack", "asker", START_MS + i * 60_000, (("user", q),))
            for i, q in enumerate(questions)
        ],
        "ask",
    )
    assert unusual_share(detector, app_user) == 0.0
    assert unusual_share(detector, asker) >= 0.9  # a few questions open too generically to say
    benign_top = max(v.max() for v in detector.benign_values_["unusual_openings"].values())
    assert benign_top < 0.5
