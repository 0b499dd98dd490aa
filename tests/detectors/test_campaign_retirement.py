"""The linker forgets accounts quiet for a month (`retire_ms`), a cluster only whole: its state,
link scans and checkpoints stay bounded by the accounts active in the last month (they grew with
every account ever seen), and a campaign that stopped keeps its last verdict in the store
instead of being written `dissolved`.

The campaign is `test_campaign_templates`' forty accounts filling four templates over one week;
honest users of the companion's benign generator arrive a month after it ends."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from core.timeutil import DAY_MS, MINUTE_MS
from detectors.campaigns import CampaignLinker, time_batches
from detectors.fusion import ExtractionDetector
from detectors.fusion.campaigns import DISSOLVED, CampaignView, Standing
from students.actors import PlannedRequest, benign_users
from tests.detectors.test_campaign_templates import START_MS, campaign, features_of

LATER_MS = START_MS + 40 * DAY_MS  # the campaign's last request is on day 7; a month passes


@pytest.fixture(scope="module")
def calibration() -> dict:
    linker = CampaignLinker().fit(features_of(benign_users(120, 400, 7, seed=31), "cal"))
    return orjson.loads(orjson.dumps(linker.calibration()))


def honest_users(seed: int, from_ms: int) -> list[PlannedRequest]:
    """A week of the companion's honest users, moved to start at `from_ms`."""
    plans = benign_users(60, 200, 7, seed=seed)
    shift = from_ms - min(p.timestamp_ms for p in plans)
    return [dataclasses.replace(p, timestamp_ms=p.timestamp_ms + shift) for p in plans]


def stream(calibration: dict, plans: list[PlannedRequest], tag: str) -> CampaignLinker:
    linker = CampaignLinker().load_calibration(calibration)
    for batch in time_batches(features_of(plans, tag), 10 * MINUTE_MS):
        linker.observe(batch)
    return linker


def campaign_clusters(linker: CampaignLinker) -> list[str]:
    return [c.cluster_id for c in linker.clusters() if any(m.startswith("cmp-") for m in c.members)]


def test_a_campaign_quiet_for_a_month_is_forgotten_whole(calibration: dict) -> None:
    plans = campaign(seed=3)
    members = sorted({p.account_id for p in plans})
    linker = stream(calibration, plans, "c")
    [cluster_id] = campaign_clusters(linker)
    keys = {k for m in members for k in linker.profiles[m].templates}
    assert linker.drain_retired() == (set(), set())

    for batch in time_batches(features_of(honest_users(33, LATER_MS), "h"), 10 * MINUTE_MS):
        linker.observe(batch)

    assert campaign_clusters(linker) == []
    assert not any(m in linker.profiles for m in members)
    assert not any(linker.profiles.key_users(k) & set(members) for k in keys)
    state = linker.state()
    assert not any(a.startswith("cmp-") for a, *_ in state["edges"] + state["evaluated"])
    assert cluster_id not in state["cluster_born"]
    retired, clusters = linker.drain_retired()
    assert set(members) <= retired and clusters == {cluster_id}
    assert linker.drain_retired() == (set(), set())


def test_one_member_still_active_keeps_the_whole_cluster(calibration: dict) -> None:
    first_week = honest_users(34, START_MS)
    linker = stream(calibration, campaign(seed=3) + first_week, "k")
    [cluster_id] = campaign_clusters(linker)
    members = [m for m in linker.profiles if m.startswith("cmp-")]
    linker.profiles[members[0]].last_seen_ms = LATER_MS  # as if it had just sent a request

    three_days = [p for p in honest_users(33, LATER_MS) if p.timestamp_ms < LATER_MS + 3 * DAY_MS]
    for batch in time_batches(features_of(three_days, "l"), 10 * MINUTE_MS):
        linker.observe(batch)

    assert campaign_clusters(linker) == [cluster_id]
    assert all(m in linker.profiles for m in members)
    retired, clusters = linker.drain_retired()
    assert retired == {p.account_id for p in first_week} and not clusters


def test_the_view_drops_a_retired_cluster_without_writing_it_dissolved(calibration: dict) -> None:
    plans = campaign(seed=3)
    linker = stream(calibration, plans, "v")
    [cluster_id] = campaign_clusters(linker)
    members = sorted({p.account_id for p in plans})
    for batch in time_batches(features_of(honest_users(33, LATER_MS), "w"), 10 * MINUTE_MS):
        linker.observe(batch)
    view = CampaignView(ExtractionDetector(linker=linker), lambda accounts: {})
    view.standing = {m: Standing(20, 0.7, "extraction") for m in members}
    view.standing_clusters = {cluster_id: (members, LATER_MS - 9 * DAY_MS)}

    update = view.advance(final=True)

    assert not [c for c in update.clusters if c.label == DISSOLVED]
    assert not update.members
    assert set(members) <= update.retired
    assert view.standing_clusters == {} and not set(view.standing) & set(members)
