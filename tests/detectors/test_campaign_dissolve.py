"""A cluster the linker no longer has is written once more as `dissolved`, and its former
members go back to their own standing: the clusters table never shows a campaign that no longer
stands (a live stream's order can link two accounts for a while; the real-service test
tests/streaming/test_linker.py met one)."""

from __future__ import annotations

from detectors.campaigns import CampaignLinker
from detectors.fusion import ExtractionDetector
from detectors.fusion.campaigns import DISSOLVED, CampaignView, Standing


def test_a_cluster_gone_from_the_linker_is_written_dissolved_once() -> None:
    view = CampaignView(ExtractionDetector(linker=CampaignLinker()), lambda members: {})
    view.standing = {"a": Standing(12, 0.21, "benign"), "b": Standing(30, 0.6, "suspicious")}
    view.standing_clusters = {"cluster-x": (["a", "b"], 1_793_550_580_150)}
    # the linker role's checkpoint carries the standing clusters
    assert view.state()["clusters"] == {"cluster-x": [["a", "b"], 1_793_550_580_150]}

    update = view.advance(final=True)

    assert [(c.cluster_id, c.label, c.members, c.score) for c in update.clusters] == [
        ("cluster-x", DISSOLVED, ["a", "b"], 0.0)
    ]
    assert {m: (a.label, a.score, a.cluster_id) for m, a in update.members.items()} == {
        "a": ("benign", 0.21, None),
        "b": ("suspicious", 0.6, None),
    }
    assert update.requests_seen == {"a": 12, "b": 30}
    assert view.advance(final=True).clusters == []  # once
