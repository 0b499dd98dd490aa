"""Attribution: which accounts received the responses a suspect model learned from?

Two methods. By text (`attribute`): the suspect's outputs matched against logged responses. By
watermark (`attribute_by_watermark`): the suspect is asked each candidate account's logged
prompts, and an account whose prompts it answers greener than the others' is the one whose
(watermarked) answers it learned. The second needs the watermark key and the suspect itself (a
folder or an endpoint), and finds a student that learned the answers without reproducing them
word for word (`provenance experiment` measures both: a pruned-teacher student trained on 10 %
watermarked answers brought only 9 of its 464 answers to the text method's Jaccard 0.3).

By text: a model distilled from our API reproduces, more or less edited, text it was trained
on. Each of its outputs is compared with the response fingerprints logged at ingest
(`detectors.fingerprints`): MinHash LSH proposes candidate pairs, and a pair matches when the
estimated Jaccard similarity of their word 3-grams reaches `threshold`.

Matches alone do not accuse anyone: an account that received many responses collects chance
matches (boilerplate, popular questions) in proportion. So each account is tested against the
null hypothesis that matched outputs land on accounts in proportion to how many responses each
received: with K outputs matching anything and an account holding a share pi_a of the N logged
responses, its count k_a of matched outputs is Binomial(K, pi_a) under the null, and
p_a = P(X >= k_a). p-values are Bonferroni-adjusted over the A accounts that could have been
named. The accounts whose responses the suspect was trained on stand out with k_a far above
K * pi_a; the rest stay near it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from datasketch import MinHashLSH
from scipy.stats import binom, hypergeom

from detectors.fingerprints import NUM_PERM, minhash, shingles, signature
from provenance.error_rates import bonferroni
from provenance.radioactivity import Window, without_reference
from provenance.watermark import GreenList, WatermarkScore, score_windows, text_windows
from storage import Store, queries
from storage.base import epoch_seconds

log = logging.getLogger(__name__)

TEXT_FIELDS = ("output", "text", "response", "completion")
NULL_HYPOTHESIS = (
    "Suspect outputs that match a logged response land on accounts in proportion to how many "
    "responses each account received in the window (share n_a / N), so an account's count of "
    "matched outputs is Binomial(K, n_a / N)."
)
CHUNK_ROWS = 20_000
_LAST_SECOND = 2**32 - 1  # the end of ClickHouse's DateTime range


@dataclass(frozen=True)
class Evidence:
    """One suspect output and the account's logged response it matches best."""

    output_index: int
    request_id: str
    jaccard: float


@dataclass(frozen=True)
class AccountAttribution:
    """One account's test: how many suspect outputs match its responses versus chance."""

    account_id: str
    fingerprints: int  # n_a: its logged responses in the window
    matched_outputs: int  # k_a: suspect outputs matching at least one of them
    expected: float  # K * n_a / N under the null
    p_value: float
    p_adjusted: float  # Bonferroni over every account with fingerprints
    evidence: list[Evidence] = field(default_factory=list)


@dataclass(frozen=True)
class AttributionTotals:
    """The population the test ran over, so a reader can check the arithmetic."""

    outputs: int  # suspect outputs given
    outputs_matched: int  # K: outputs matching any logged response
    fingerprints: int  # N: logged responses in the window
    accounts: int  # A: accounts with fingerprints (the Bonferroni factor)
    accounts_matched: int  # accounts with k_a > 0 (listed up to `accounts_limit`)
    threshold: float
    since: datetime | None
    until: datetime | None
    null_hypothesis: str = NULL_HYPOTHESIS


@dataclass(frozen=True)
class Attribution:
    """Ranked accounts (ascending p, then more matches first) and the totals behind them."""

    accounts: list[AccountAttribution]
    totals: AttributionTotals

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (datetimes as ISO 8601 strings)."""
        data = asdict(self)
        for key in ("since", "until"):
            value = data["totals"][key]
            data["totals"][key] = None if value is None else value.isoformat()
        return data


def load_suspect_outputs(path: Path) -> list[str]:
    """Suspect model outputs from JSONL (field `output`, `text`, `response` or `completion`)."""
    return read_texts(path, TEXT_FIELDS)


def read_texts(path: Path, fields: Sequence[str]) -> list[str]:
    """Texts from JSONL: per line an object whose text is the first present of `fields`. Blank
    lines are skipped; anything else that is not such an object is an error naming the line,
    so a wrong file is not silently half-read."""
    outputs: list[str] = []
    with Path(path).open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number}: not valid JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path} line {number}: expected a JSON object, got {record!r:.60}"
                )
            name = next((n for n in fields if record.get(n) is not None), None)
            if name is None:
                raise ValueError(
                    f"{path} line {number}: no text field (one of {', '.join(fields)})"
                )
            if not isinstance(record[name], str):
                raise ValueError(f"{path} line {number}: field {name!r} is not a string")
            outputs.append(record[name])
    return outputs


def _window(since: datetime | None, until: datetime | None) -> dict[str, int]:
    return {
        "since": 0 if since is None else epoch_seconds(since),
        "until": _LAST_SECOND if until is None else epoch_seconds(until),
    }


def attribute(
    store: Store,
    outputs: Sequence[str],
    threshold: float = 0.3,
    since: datetime | None = None,
    until: datetime | None = None,
    evidence_per_account: int = 5,
    accounts_limit: int = 20,
    progress: Callable[[int], None] | None = None,
) -> Attribution:
    """Rank the accounts whose logged responses the suspect's `outputs` match beyond chance.

    The LSH index holds the suspect outputs and the stored fingerprints stream past it in
    chunks: band collisions are symmetric, so this finds the same candidate pairs as indexing
    the store, with memory bounded by the outputs rather than by the store. `since`/`until`
    (inclusive, second resolution) restrict the responses to a time window. `progress` is
    called with the number of fingerprints read so far after each chunk.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    signatures = np.zeros((len(outputs), NUM_PERM), dtype=np.uint64)
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    for index, text in enumerate(outputs):
        if not shingles(text):
            continue  # no words: nothing to compare (an empty sketch would match every other)
        signatures[index] = signature(text)
        lsh.insert(index, minhash(signatures[index]))

    counts: dict[str, int] = {}
    # account → output index → (jaccard, request_id) of its best-matching response
    best: dict[str, dict[int, tuple[float, str]]] = {}
    skipped, after, read = 0, "", 0
    window = _window(since, until)
    while True:
        rows = queries.fingerprints_after(
            store, window["since"], window["until"], after, CHUNK_ROWS
        )
        for row in rows:
            if len(row["minhash"]) != NUM_PERM:
                skipped += 1  # written with other parameters: not comparable
                continue
            account = row["account_id"]
            counts[account] = counts.get(account, 0) + 1
            if lsh.is_empty():
                continue
            stored = np.asarray(row["minhash"], dtype=np.uint64)
            candidates = lsh.query(minhash(stored))
            if not candidates:
                continue
            similarity = (signatures[candidates] == stored).mean(axis=1)
            for index, jaccard in zip(candidates, similarity.tolist(), strict=True):
                if jaccard < threshold:
                    continue
                matches = best.setdefault(account, {})
                previous = matches.get(index)
                if previous is None or jaccard > previous[0]:
                    matches[index] = (jaccard, row["request_id"])
        read += len(rows)
        if progress:
            progress(read)
        if len(rows) < CHUNK_ROWS:
            break
        after = rows[-1]["request_id"]
    if skipped:
        log.warning("skipped %d fingerprints whose signature is not %d values", skipped, NUM_PERM)

    total = sum(counts.values())
    accounts = len(counts)
    matched_outputs = len({index for matches in best.values() for index in matches})
    ranked = []
    for account, matches in best.items():
        share = counts[account] / total
        k = len(matches)
        p_value = float(binom.sf(k - 1, matched_outputs, share))
        evidence = sorted(
            (
                Evidence(index, request_id, jaccard)
                for index, (jaccard, request_id) in matches.items()
            ),
            key=lambda e: (-e.jaccard, e.output_index),
        )[:evidence_per_account]
        ranked.append(
            AccountAttribution(
                account_id=account,
                fingerprints=counts[account],
                matched_outputs=k,
                expected=matched_outputs * share,
                p_value=p_value,
                p_adjusted=bonferroni(p_value, accounts),
                evidence=evidence,
            )
        )
    ranked.sort(key=lambda a: (a.p_value, -a.matched_outputs, a.account_id))
    totals = AttributionTotals(
        outputs=len(outputs),
        outputs_matched=matched_outputs,
        fingerprints=total,
        accounts=accounts,
        accounts_matched=len(ranked),
        threshold=threshold,
        since=None if since is None else _utc(since),
        until=None if until is None else _utc(until),
    )
    return Attribution(accounts=ranked[:accounts_limit], totals=totals)


WATERMARK_NULL_HYPOTHESIS = (
    "The suspect learned no more from this account's responses than from any other candidate's: "
    "its answers to this account's prompts are no greener than its answers to the other "
    "candidates' prompts, so the account's green count among all scored windows is "
    "hypergeometric (green share of all windows, drawn as many as the account has)."
)


@dataclass(frozen=True)
class AccountWatermark:
    """One candidate account: how green the suspect's answers to its logged prompts are."""

    account_id: str
    answers: int  # the suspect's answers to the account's prompts
    score: WatermarkScore  # distinct windows of those answers (less the reference's)
    contrast_p: float  # greener than the answers to the other candidates' prompts (one-sided)
    contrast_p_adjusted: float  # Bonferroni over the candidates

    @property
    def p_value(self) -> float:
        """Green share against gamma alone: the answers carry the watermark at all."""
        return self.score.p_value


@dataclass(frozen=True)
class WatermarkAttribution:
    """Candidates ranked by contrast p (ascending), and the pool the contrast is drawn from."""

    accounts: list[AccountWatermark]
    scored: int  # N: scored windows over all candidates
    green: int  # K: green ones among them
    gamma: float
    reference_windows_left_out: int | None
    null_hypothesis: str = WATERMARK_NULL_HYPOTHESIS

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for row, account in zip(data["accounts"], self.accounts, strict=True):
            row["p_value"] = account.p_value
        return data


def attribute_by_watermark(
    greens: GreenList,
    tokenizer,
    answers: dict[str, Sequence[str]],
    reference: frozenset[Window] | None = None,
) -> WatermarkAttribution:
    """Rank candidate accounts by how much greener the suspect's `answers` to each account's
    logged prompts are than its answers to the other candidates' (a suspect that learned from
    watermarked text at all is greener everywhere: the contrast, not gamma, says whose). Each
    account's windows are de-duplicated within the account; `reference` windows are left out
    as in the radioactivity tests."""
    width = greens.key.context_width
    scores: dict[str, WatermarkScore] = {}
    left_out = 0
    for account, texts in answers.items():
        kept, removed = without_reference(text_windows(tokenizer, texts, width), reference)
        left_out += removed or 0
        scores[account] = score_windows(greens, kept)
    total = sum(s.scored for s in scores.values())
    green = sum(s.green for s in scores.values())
    ranked = []
    for account, score in scores.items():
        p = hypergeom.sf(score.green - 1, total, green, score.scored) if score.scored else 1.0
        p = float(p)
        ranked.append(
            AccountWatermark(account, len(answers[account]), score, p, bonferroni(p, len(scores)))
        )
    ranked.sort(key=lambda a: (a.contrast_p, a.p_value, a.account_id))
    return WatermarkAttribution(
        ranked, total, green, greens.key.gamma, None if reference is None else left_out
    )


@dataclass(frozen=True)
class CombinedAccount:
    """One account under both methods: each one's adjusted p (1 where it lists no evidence for
    the account) and their combination."""

    account_id: str
    text_p_adjusted: float
    watermark_p_adjusted: float
    strongest: float  # the smaller adjusted p before capping at 1: it orders accounts at 1

    @property
    def p_adjusted(self) -> float:
        """The smaller of the two, doubled: Bonferroni over the methods, so naming an account
        at alpha keeps the family-wise error over accounts and both methods at alpha."""
        return bonferroni(self.strongest, 2)


def combine_attributions(
    text: Attribution, watermark: WatermarkAttribution
) -> list[CombinedAccount]:
    """One ranking from both methods, over every account either ranks, by the smaller of its
    two adjusted p-values before they are capped at 1 (so a third harvester that only one
    method ranks, weakly, still goes before an account neither names). Why: the methods fail at
    opposite ends (`provenance experiment`): by text when a student reproduces harvested
    answers only in pieces (few outputs reach the match threshold), by watermark when nearly
    all its training text was ours (it answers every account's prompts green, so none stands
    out)."""
    by_text = {a.account_id: a for a in text.accounts}
    by_mark = {a.account_id: a for a in watermark.accounts}
    text_tests, mark_tests = text.totals.accounts, len(watermark.accounts)
    rows = []
    for account in dict.fromkeys([*by_mark, *by_text]):
        words, mark = by_text.get(account), by_mark.get(account)
        rows.append(
            CombinedAccount(
                account,
                words.p_adjusted if words else 1.0,
                mark.contrast_p_adjusted if mark else 1.0,
                min(
                    words.p_value * text_tests if words else float(max(text_tests, 1)),
                    mark.contrast_p * mark_tests if mark else float(max(mark_tests, 1)),
                ),
            )
        )
    return sorted(rows, key=lambda row: (row.strongest, row.account_id))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def evidence_texts(store: Store, request_ids: Sequence[str]) -> dict[str, str]:
    """The logged response text of matched requests, for showing evidence next to the outputs.

    This is the `events` row's text, which may be hashed or truncated by the redaction setting in
    force at ingest (the fingerprint was taken before redaction); missing ids are left out.
    """
    return queries.response_texts(store, request_ids)
