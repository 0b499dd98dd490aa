"""Campaign linking when wording differs: forty accounts split one harvest, each wording it
through one of four templates (same skeleton, different fillers, no prompt twice), from bare SDK
clients without an IP, keeping the same late-evening schedule on different days. Honest users of
one app (one template and one parameter profile, which calibration never saw) and an office
behind one NAT with one browser must stay unlinked."""

from __future__ import annotations

import dataclasses
import itertools
import random

import orjson
import pytest

from core.events import Event
from core.timeutil import DAY_MS, HOUR_MS, MINUTE_MS
from detectors.campaigns import CampaignLinker, time_batches
from detectors.campaigns.skeletons import skeleton_keys
from detectors.features import EventFeatures, SimHasher, featurize
from students.actors import PlannedRequest, benign_users, request_record

HASHER = SimHasher()
START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z, where the companion's clock starts
ACCOUNTS = 40
TEMPLATES = (
    "Write a detailed encyclopedia entry on {x}, with history and key facts.",
    "{x}: I need an in-depth overview covering origins, development and impact.",
    "Could you produce a thorough report about {x}? Cover background and significance.",
    "Prepare comprehensive study notes on {x} including its main controversies.",
)
WORDS = (  # noqa: SIM905
    "Amber Basin Cedar Delta Ember Falcon Granite Harbor Iris Juniper Kestrel Lantern Maple "
    "Nimbus Orchid Pioneer Quartz Raven Sierra Tundra Umber Valley Willow Zephyr"
).split(" ")
AGENTS = ("OpenAI/Python 1.40.6", "OpenAI/Python 1.51.2", "OpenAI/NodeJS 4.67.3")


def fillers() -> list[str]:
    """Distinct capitalised titles, a slice of them per account."""
    return [" ".join(words) for words in itertools.permutations(WORDS, 3)]


def campaign(seed: int) -> list[PlannedRequest]:
    rng = random.Random(seed)
    titles = fillers()
    rng.shuffle(titles)
    plans = []
    for index in range(ACCOUNTS):
        account = f"cmp-{seed}-{index:03d}"
        agent = rng.choice(AGENTS)
        for k, title in enumerate(titles[index * 20 : (index + 1) * 20]):
            day = rng.randrange(7)
            moment = START_MS + day * DAY_MS + 21 * HOUR_MS + rng.randrange(2 * HOUR_MS)
            prompt = TEMPLATES[index % len(TEMPLATES)].format(x=title)
            plans.append(
                PlannedRequest(
                    "attack:multi_account_campaign",
                    account,
                    moment + k,
                    (("user", prompt),),
                    temperature=0.0,
                    max_tokens=1800,
                    user_agent=agent,
                )
            )
    return plans


def app_users(seed: int, accounts: int = 12) -> list[PlannedRequest]:
    """Honest users of one summariser app: one template, the app's parameters, any hour."""
    rng = random.Random(seed)
    titles = fillers()
    plans = []
    for index in range(accounts):
        for _ in range(20):
            moment = START_MS + rng.randrange(7 * DAY_MS)
            prompt = (
                f"Summarise the article titled {rng.choice(titles)} for our newsletter readers."
            )
            plans.append(
                PlannedRequest(
                    "benign",
                    f"app-{seed}-{index:02d}",
                    moment,
                    (("user", prompt),),
                    temperature=0.3,
                    max_tokens=400,
                    user_agent="SummariserApp/2.1",
                )
            )
    return plans


def behind_nat(plans: list[PlannedRequest], accounts: int = 12) -> list[PlannedRequest]:
    """Honest users behind one office NAT address with one browser: shared infrastructure that
    calibration never saw (each keeps its own schedule)."""
    office = sorted({p.account_id for p in plans})[:accounts]
    return [
        dataclasses.replace(p, client_ip="100.64.7.9", user_agent="Mozilla/5.0 intranet")
        if p.account_id in office
        else p
        for p in plans
    ]


def features_of(plans: list[PlannedRequest], tag: str) -> list[EventFeatures]:
    plans = sorted(plans, key=lambda p: p.timestamp_ms)
    events = [Event.model_validate(request_record(p, f"{tag}-{i}")) for i, p in enumerate(plans)]
    return featurize(events, HASHER)


@pytest.fixture(scope="module")
def fitted() -> CampaignLinker:
    return CampaignLinker().fit(features_of(benign_users(120, 400, 7, seed=31), "cal"))


def same_week(plans: list[PlannedRequest], week: list[PlannedRequest]) -> list[PlannedRequest]:
    """`plans` moved by whole days into the week `week` starts (same hours of the day)."""
    days = (min(p.timestamp_ms for p in week) - START_MS) // DAY_MS
    return [dataclasses.replace(p, timestamp_ms=p.timestamp_ms + days * DAY_MS) for p in plans]


@pytest.fixture(scope="module")
def linked(fitted: CampaignLinker) -> CampaignLinker:
    """The office, the app's users and the campaign in the same week (the companion's clock
    starts elsewhere)."""
    office = behind_nat(benign_users(120, 400, 7, seed=32))
    live = office + same_week(app_users(seed=5) + campaign(seed=3), office)
    linker = CampaignLinker().load_calibration(orjson.loads(orjson.dumps(fitted.calibration())))
    for batch in time_batches(features_of(live, "live"), 10 * MINUTE_MS):
        linker.observe(batch)
    return linker


def test_templates_with_different_fillers_share_a_skeleton() -> None:
    plans = campaign(seed=3)
    first = {p.account_id: p.prompt for p in plans}
    same = [skeleton_keys(first[f"cmp-3-{i:03d}"])[0] for i in (0, 4, 8)]
    assert len(set(first.values())) == ACCOUNTS and len(set(same)) == 1
    assert skeleton_keys(first["cmp-3-001"])[0] != same[0]


def test_worded_campaign_is_one_cluster(linked: CampaignLinker) -> None:
    clusters = [c for c in linked.clusters() if any(m.startswith("cmp-") for m in c.members)]
    assert clusters
    assert sum(m.startswith("cmp-") for m in clusters[0].members) >= 36
    assert all(m.startswith("cmp-") for c in clusters for m in c.members)
    assert {"templates", "rhythm"} <= set(clusters[0].evidence["evidence_share"])


def test_honest_accounts_behind_one_nat_are_not_linked(linked: CampaignLinker) -> None:
    linked_accounts = {m for c in linked.clusters() for m in c.members}
    assert not {a for a in linked_accounts if a.startswith("user-")}


@pytest.mark.xfail(
    strict=True,
    reason="known limit: users of an app calibration never saw send near-duplicate prompts "
    "(short fillers in one template) with the app's unseen parameters: two rare families",
)
def test_honest_users_of_an_unseen_app_are_not_linked(linked: CampaignLinker) -> None:
    linked_accounts = {m for c in linked.clusters() for m in c.members}
    assert not {a for a in linked_accounts if a.startswith("app-")}


def test_state_with_templates_and_weak_links_round_trips(linked: CampaignLinker) -> None:
    restored = CampaignLinker().load(orjson.loads(orjson.dumps(linked.state())))
    assert restored.clusters() == linked.clusters()
    account = next(a for a in restored.profiles if a.startswith("cmp-"))
    assert restored.profiles[account].templates == linked.profiles[account].templates


def test_a_calibration_file_from_before_templates_still_loads(fitted: CampaignLinker) -> None:
    old = orjson.loads(orjson.dumps(fitted.calibration()))
    for key in ("common_skeletons", "rhythm", "weak_threshold"):
        del old[key]
    for piece in ("templates", "rhythm"):
        del old["tails"][piece]
    for tail in old["tails"].values():
        del tail["gapless"]
    linker = CampaignLinker().load_calibration(old)
    linker.observe(features_of(campaign(seed=4)[:200], "old"))
    assert linker.weak_threshold_ == float("inf") and not linker.common_skeletons_
