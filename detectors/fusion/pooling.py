"""Campaign pooling: a linked cluster is scored as one account (its members' windows pooled), and
each member gets the campaign's verdict when it is the graver one. A campaign keeps each account
under every per-account threshold; pooled, the harvest shows.

>>> from core.verdicts import Assessment
>>> from detectors.campaigns import Cluster
>>> accounts = {"a": AccountWindow(deque(), seen=5), "b": AccountWindow(deque(), seen=7)}
>>> pooled_window(["a", "b"], accounts).seen
12
>>> cluster = Cluster("cluster-1", ["a", "b"], {}, 0, 60_000)
>>> campaign = Assessment(score=0.9, label="extraction", reasons=[])
>>> assessments = {"a": Assessment(score=0.1, label="benign", reasons=[])}
>>> share_verdict(assessments, ["a", "b"], campaign, cluster, accounts)
>>> [(m, a.label, a.cluster_id, a.reasons[0].signal) for m, a in sorted(assessments.items())]
[('a', 'extraction', 'cluster-1', 'campaign'), ('b', 'extraction', 'cluster-1', 'campaign')]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime

from core.verdicts import Assessment
from detectors.campaigns import Cluster
from detectors.fusion.explanation import campaign_reason
from detectors.fusion.window import AccountWindow
from detectors.sketches import merged


def pooled_window(members: list[str], accounts: Mapping[str, AccountWindow]) -> AccountWindow:
    """The members' windows as one time-ordered window, scored with every signal."""
    return AccountWindow(
        deque(
            sorted(
                (f for m in members for f in accounts[m].features),
                key=lambda f: f.timestamp_ms,
            )
        ),
        seen=sum(accounts[m].seen for m in members),
        deep=True,
        lifetime=merged(accounts[m].lifetime for m in members),
    )


def share_verdict(
    assessments: dict[str, Assessment],
    members: list[str],
    verdict: Assessment,
    cluster: Cluster,
    accounts: Mapping[str, AccountWindow],
) -> None:
    """Give every member the campaign's verdict when it is graver than its own; every member's
    assessment names the cluster."""
    campaign = campaign_reason(cluster)
    observed = datetime.fromtimestamp(cluster.last_seen_ms / 1000, UTC)
    for member in members:
        own = assessments.get(member)
        if own is None or verdict.score > own.score:
            assessments[member] = verdict.model_copy(
                update={
                    "reasons": [campaign, *verdict.reasons],
                    "cluster_id": cluster.cluster_id,
                    "observed_at": observed,
                }
            )
            accounts[member].label = verdict.label
        else:
            assessments[member] = own.model_copy(update={"cluster_id": cluster.cluster_id})
