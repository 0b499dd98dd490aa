"""Attribution on real ShareGPT responses in the embedded store: the accounts whose responses a
suspect model copies are named, chance matches of a large account and unrelated text are not."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from core.events import Event
from core.settings import Settings
from detectors.corpus import iter_conversations
from detectors.fingerprints import response_fingerprints, shingles, signature
from provenance.attribution import (
    AccountAttribution,
    AccountWatermark,
    Attribution,
    AttributionTotals,
    WatermarkAttribution,
    attribute,
    combine_attributions,
    evidence_texts,
    load_suspect_outputs,
)
from provenance.cases import Suspect, watermark_attribution_case
from provenance.watermark import WatermarkScore
from storage import Store
from storage.rows import event_row, fingerprint_row

START_MS = 1_795_000_000_000
HEAVY, TARGETS = "acct-00", ("acct-17", "acct-42")
PER_ACCOUNT, HEAVY_RESPONSES, ACCOUNTS = 5, 60, 60


def real_responses(count: int) -> list[str]:
    """Distinct ShareGPT assistant turns of at least 40 words, in file order."""
    seen: set[str] = set()
    found: list[str] = []
    for conversation in iter_conversations(limit=1000):
        for role, text in conversation.turns:
            if role == "assistant" and len(re.findall(r"\w+", text)) >= 40 and text not in seen:
                seen.add(text)
                found.append(text)
                if len(found) == count:
                    return found
    raise AssertionError(f"only {len(found)} usable ShareGPT responses")


def edited(text: str, rng: random.Random) -> str:
    """What a distilled model might say: a few words dropped or changed, the end cut off."""
    words = text.split()
    for _ in range(3):
        del words[rng.randrange(len(words))]
    for _ in range(2):
        words[rng.randrange(len(words))] = rng.choice(["however", "indeed", "basically"])
    return " ".join(words[: int(len(words) * 0.85)])


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[str]]:
    """Logged responses per account (one large account, the rest small) and unrelated texts."""
    texts = real_responses(HEAVY_RESPONSES + (ACCOUNTS - 1) * PER_ACCOUNT + 80)
    logged = {HEAVY: texts[:HEAVY_RESPONSES]}
    position = HEAVY_RESPONSES
    for a in range(1, ACCOUNTS):
        logged[f"acct-{a:02d}"] = texts[position : position + PER_ACCOUNT]
        position += PER_ACCOUNT
    return {**logged, "unrelated": texts[position:]}


def log_responses(store: Store, corpus: dict[str, list[str]]) -> None:
    events = []
    for account, responses in corpus.items():
        if account == "unrelated":
            continue
        for i, response in enumerate(responses):
            events.append(
                Event(
                    request_id=f"{account}-r{i}",
                    account_id=account,
                    timestamp=START_MS + len(events) * 1000,
                    prompt="(the user's question)",
                    response=response,
                )
            )
    store.insert("events", [event_row(e) for e in events])
    store.insert(
        "response_fingerprints", [fingerprint_row(f) for f in response_fingerprints(events)]
    )


def test_the_accounts_a_suspect_copied_from_rank_first(embedded: Store, corpus) -> None:
    log_responses(embedded, corpus)
    rng = random.Random(7)
    outputs = [edited(text, rng) for account in TARGETS for text in corpus[account]]
    outputs += [edited(text, rng) for text in corpus[HEAVY][:2]]  # what chance would give it
    outputs += corpus["unrelated"][:30]
    rng.shuffle(outputs)

    result = attribute(embedded, outputs)

    totals = result.totals
    assert (totals.outputs, totals.fingerprints, totals.accounts) == (len(outputs), 355, 60)
    assert totals.outputs_matched >= 12 and totals.threshold == 0.3
    assert "proportion" in totals.null_hypothesis
    top = result.accounts[:2]
    assert {a.account_id for a in top} == set(TARGETS)
    for account in top:
        assert account.p_adjusted < 1e-3
        assert account.matched_outputs == PER_ACCOUNT and account.fingerprints == PER_ACCOUNT
        assert account.expected == pytest.approx(totals.outputs_matched * PER_ACCOUNT / 355)
        assert len(account.evidence) == PER_ACCOUNT
        jaccards = [e.jaccard for e in account.evidence]
        assert jaccards == sorted(jaccards, reverse=True) and min(jaccards) >= 0.3
        for evidence in account.evidence:
            assert evidence.request_id.startswith(account.account_id + "-")
            original = corpus[account.account_id][int(evidence.request_id.rsplit("r", 1)[1])]
            assert edited_from(outputs[evidence.output_index], original)
    for account in result.accounts[2:]:
        assert account.p_adjusted >= 0.01, account
    heavy = next(a for a in result.accounts if a.account_id == HEAVY)
    assert heavy.matched_outputs >= 2 and heavy.expected > 1.5  # two matches: about chance
    assert [a.p_value for a in result.accounts] == sorted(a.p_value for a in result.accounts)

    document = orjson.loads(orjson.dumps(result.to_dict()))
    assert document["accounts"][0]["evidence"][0].keys() == {
        "output_index",
        "request_id",
        "jaccard",
    }
    ids = [e.request_id for e in top[0].evidence]
    texts = evidence_texts(embedded, ids + ["no-such-request"])
    assert set(texts) == set(ids)
    assert texts[ids[0]] in corpus[top[0].account_id]


def edited_from(output: str, original: str) -> bool:
    """Most of the output's 3-grams come from the original (it is an edited copy of it)."""
    mine = shingles(output)
    return len(mine & shingles(original)) > 0.6 * len(mine)


def test_unrelated_outputs_name_nobody(embedded: Store, corpus) -> None:
    log_responses(embedded, corpus)
    result = attribute(embedded, corpus["unrelated"])
    assert result.totals.outputs == len(corpus["unrelated"])
    assert all(a.p_adjusted >= 0.01 for a in result.accounts)
    # One copied response from each of 12 accounts: matches spread as chance would spread them.
    rng = random.Random(5)
    spread = [edited(corpus[f"acct-{a:02d}"][0], rng) for a in range(1, 13)]
    result = attribute(embedded, spread + corpus["unrelated"])
    assert result.totals.outputs_matched == 12 and len(result.accounts) == 12
    assert all(a.matched_outputs == 1 and a.p_adjusted >= 0.01 for a in result.accounts)


def test_the_time_window_and_limits(embedded: Store, corpus) -> None:
    log_responses(embedded, corpus)
    outputs = [edited(text, random.Random(3)) for text in corpus[TARGETS[0]]]
    before = datetime.fromtimestamp(START_MS / 1000 - 1, tz=UTC)
    empty = attribute(embedded, outputs, until=before)
    assert empty.accounts == [] and empty.totals.fingerprints == 0
    assert empty.totals.until == before
    limited = attribute(embedded, outputs, accounts_limit=1, evidence_per_account=2, since=before)
    assert [a.account_id for a in limited.accounts] == [TARGETS[0]]
    assert len(limited.accounts[0].evidence) == 2
    assert attribute(embedded, ["", "!!!"]).totals.outputs_matched == 0  # no words, no match


def test_signatures_are_stable_and_estimate_jaccard() -> None:
    text = real_responses(1)[0]
    assert signature(text).tolist() == signature(text).tolist()
    assert signature(text.upper() + "  ").tolist() == signature(text).tolist()
    assert shingles("") == set() and shingles("Two words") == {b"two words"}
    assert shingles("a b c d") == {b"a b c", b"b c d"}


def test_suspect_outputs_load_from_jsonl_and_bad_lines_are_named(tmp_path: Path) -> None:
    good = tmp_path / "outputs.jsonl"
    good.write_text(
        '{"output": "first"}\n\n{"text": "second", "model": "m"}\n'
        '{"completion": "fourth", "response": "third"}\n{"text": null, "completion": "fifth"}\n'
    )
    assert load_suspect_outputs(good) == ["first", "second", "third", "fifth"]
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"output": "ok"}\n\n{"prompt": "no text field"}\n')
    with pytest.raises(ValueError, match=r"line 3: no text field"):
        load_suspect_outputs(missing)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"output": "ok"}\n{"output": "cut\n')
    with pytest.raises(ValueError, match=r"line 2: not valid JSON"):
        load_suspect_outputs(broken)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('["a list"]\n')
    with pytest.raises(ValueError, match=r"line 1: expected a JSON object"):
        load_suspect_outputs(wrong)


def test_attribution_by_watermark_refuses_hashed_prompts_and_a_single_candidate(
    embedded: Store,
) -> None:
    """Prompts stored hashed (DG_REDACT_PROMPTS=hash) cannot be asked again: the account is
    named, nothing is sent to the suspect; one candidate has nobody to contrast with."""
    events = [
        Event(
            request_id=f"{account}-{i}",
            account_id=account,
            timestamp=START_MS + i * 1000,
            prompt=f"question {i} of {account}",
            response="an answer",
        )
        for account in ("hashed-acct", "plain-acct")
        for i in range(3)
    ]
    embedded.insert(
        "events",
        [
            event_row(e, redact_policy="hash" if e.account_id == "hashed-acct" else "none")
            for e in events
        ],
    )
    settings = Settings(watermark_key="k")
    unreachable = Suspect(endpoint="http://127.0.0.1:9/v1/chat/completions")
    with pytest.raises(ValueError, match="readable prompt for hashed-acct"):
        watermark_attribution_case(
            settings, embedded, unreachable, ["hashed-acct", "plain-acct"], tokenizer=None
        )
    with pytest.raises(ValueError, match="two --account"):
        watermark_attribution_case(settings, embedded, unreachable, ["plain-acct"], tokenizer=None)


def test_both_attributions_combine_into_one_ranking_bonferroni_over_the_two() -> None:
    def by_text(account: str, p: float) -> AccountAttribution:
        return AccountAttribution(account, 10, 3, 0.5, p, min(1.0, 4 * p))  # 4 accounts

    def by_mark(account: str, p: float) -> AccountWatermark:
        score = WatermarkScore(100, 40, 3.0, 1e-3)
        return AccountWatermark(account, 6, score, p, min(1.0, 3 * p))  # 3 candidates

    totals = AttributionTotals(24, 5, 400, 4, 3, 0.3, None, None)
    text = Attribution([by_text("x", 2.5e-5), by_text("w", 0.01), by_text("y", 0.2)], totals)
    mark = WatermarkAttribution(
        [by_mark("z", 2.5e-4), by_mark("x", 0.05), by_mark("y", 0.3)],
        scored=300,
        green=120,
        gamma=0.25,
        reference_windows_left_out=None,
    )
    rows = combine_attributions(text, mark)
    # x: named by text, z: by watermark only, w: by text only (never asked), y: by neither
    assert [r.account_id for r in rows] == ["x", "z", "w", "y"]
    assert [r.p_adjusted for r in rows] == pytest.approx([2e-4, 1.5e-3, 0.08, 1.0])
    assert (rows[1].text_p_adjusted, rows[2].watermark_p_adjusted) == (1.0, 1.0)  # not listed
    # Both at 1 once adjusted: a harvester the text method ranks weakly (p 0.3 of 4 accounts)
    # still goes before an account the watermark ranks more weakly still (0.45 of 3).
    weak = combine_attributions(
        Attribution([by_text("h", 0.3)], totals),
        WatermarkAttribution(
            [by_mark("b", 0.45), by_mark("h", 0.9), by_mark("c", 0.95)], 10, 4, 0.25, None
        ),
    )
    assert [r.account_id for r in weak] == ["h", "b", "c"]
    assert [r.p_adjusted for r in weak] == [1.0, 1.0, 1.0]
