"""Provenance cases as the CLI and the forensic report see them: a radioactivity test or an
attribution, run against the store's logged requests, written as one JSON document that the
report's provenance section renders (with the measured false-accusation rate)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from core.settings import Settings
from core.version import full_version
from provenance.attribution import (
    TEXT_FIELDS,
    attribute,
    attribute_by_watermark,
    combine_attributions,
    evidence_texts,
    load_suspect_outputs,
    read_texts,
)
from provenance.error_rates import FALSE_ACCUSATION_ALPHA, bonferroni, load_error_rates
from provenance.radioactivity import (
    Generator,
    ask,
    closed_model_test,
    endpoint_generator,
    load_suspect,
    local_generator,
    open_model_test,
    reference_windows,
)
from provenance.watermark import GreenList, WatermarkKey
from storage import Store, queries
from storage.rows import redact_for_display

EXCERPT_CHARS = 600


@dataclass(frozen=True)
class Suspect:
    """What we know of the suspect model: a local folder, its outputs, or an endpoint."""

    model_dir: Path | None = None
    outputs_file: Path | None = None
    endpoint: str | None = None
    endpoint_model: str = "suspect"
    endpoint_token: str | None = None

    def describe(self) -> dict:
        if self.model_dir is not None:
            return {"kind": "local model", "path": str(self.model_dir)}
        if self.outputs_file is not None:
            return {
                "kind": "outputs file",
                "path": str(self.outputs_file),
                "sha256": hashlib.sha256(self.outputs_file.read_bytes()).hexdigest(),
            }
        return {"kind": "endpoint", "url": self.endpoint, "model": self.endpoint_model}


def logged_requests(
    store: Store, accounts: Sequence[str], limit: int = 2000
) -> list[tuple[str, str]]:
    """(prompt, response) of the accounts' logged requests that have a response, oldest first.
    Under a redaction policy these are the stored (redacted) texts."""
    return queries.answered_prompts(store, accounts, limit)


def radioactivity_case(
    settings: Settings,
    store: Store,
    suspect: Suspect,
    accounts: Sequence[str] = (),
    mode: Literal["open", "closed"] = "closed",
    prompts_file: Path | None = None,
    texts_file: Path | None = None,
    max_new_tokens: int = 48,
    *,
    tokenizer: Any,
    reference_file: Path | None = None,
) -> dict:
    """Run the radioactivity test the suspect allows and return the case document.

    Closed: the suspect's outputs file, or its answers (local folder or endpoint) to the
    prompts of `prompts_file` or of the accounts' logged requests. Open: the local folder reads
    the watermarked texts of `texts_file` or the accounts' logged responses. Either test leaves
    out the windows of `reference_file` (our model's unwatermarked answers) when given."""
    key = WatermarkKey.from_settings(settings)
    greens = GreenList(key, len(tokenizer))
    reference = _reference(tokenizer, key, reference_file)
    logged = logged_requests(store, accounts) if accounts else []
    if mode == "open":
        if suspect.model_dir is None:
            raise ValueError("the open-model test needs --model (a local transformers folder)")
        model = load_suspect(suspect.model_dir)
        if model.config.vocab_size != len(tokenizer):
            raise ValueError(
                f"the suspect's vocabulary ({model.config.vocab_size}) is not the teacher's "
                f"({len(tokenizer)}): use the closed-model test"
            )
        texts: list[tuple[str | None, str]] = (
            [(None, t) for t in read_texts(texts_file, ("text", "response", "output"))]
            if texts_file
            else list(logged)
        )
        if not texts:
            raise ValueError("no watermarked text to feed: give --texts or --account")
        result = open_model_test(model, tokenizer, greens, texts, reference=reference)
    else:
        if suspect.outputs_file is not None:
            outputs = load_suspect_outputs(suspect.outputs_file)
        else:
            prompts = (
                read_texts(prompts_file, ("prompt", "text"))
                if prompts_file
                else [p for p, _ in logged]
            )
            if not prompts:
                raise ValueError("no prompts to ask: give --prompts or --account")
            outputs = ask(_generator(suspect, tokenizer, max_new_tokens), prompts)
        result = closed_model_test(greens, tokenizer, outputs, reference)
    return _case(
        "radioactivity",
        suspect,
        accounts=list(accounts),
        key_id=key.key_id,
        gamma=key.gamma,
        test=result.to_dict(),
        false_accusation=load_error_rates(settings.data_dir),
    )


def _reference(tokenizer, key: WatermarkKey, reference_file: Path | None):
    if reference_file is None:
        return None
    return reference_windows(tokenizer, read_texts(reference_file, TEXT_FIELDS), key.context_width)


def _generator(suspect: Suspect, tokenizer, max_new_tokens: int) -> Generator:
    """The suspect as a callable that answers prompts: a local folder or an endpoint."""
    if suspect.model_dir is not None:
        return local_generator(load_suspect(suspect.model_dir), tokenizer, max_new_tokens)
    if suspect.endpoint:
        return endpoint_generator(
            suspect.endpoint, suspect.endpoint_model, suspect.endpoint_token, max_new_tokens
        )
    raise ValueError("give the suspect as --model, --outputs or --endpoint")


def watermark_attribution_case(
    settings: Settings,
    store: Store,
    suspect: Suspect,
    accounts: Sequence[str],
    max_new_tokens: int = 48,
    *,
    tokenizer: Any,
    reference_file: Path | None = None,
    prompts_per_account: int = 200,
) -> dict:
    """Ask the suspect (a folder or an endpoint) each candidate account's logged prompts (its
    first `prompts_per_account` answered ones) and rank the accounts by how much greener its
    answers to them are than to the others' (`attribute_by_watermark`). Candidates are the
    accounts under suspicion plus honest ones to contrast with: at least two."""
    if len(set(accounts)) < 2:
        raise ValueError("watermark attribution compares accounts: give two --account or more")
    if suspect.model_dir is None and not suspect.endpoint:
        raise ValueError("watermark attribution asks the suspect: give --model or --endpoint")
    key = WatermarkKey.from_settings(settings)
    logged = {
        account: [p for p, _ in logged_requests(store, [account], prompts_per_account)]
        for account in dict.fromkeys(accounts)
    }
    # prompts hashed at ingest (DG_REDACT_PROMPTS=hash) cannot be asked again
    prompts = {a: [p for p in asked if not p.startswith("sha256:")] for a, asked in logged.items()}
    if empty := [a for a, p in prompts.items() if not p]:
        raise ValueError(
            f"no logged request with a response and a readable prompt for {', '.join(empty)} "
            "(prompts stored hashed cannot be asked again)"
        )
    generate = _generator(suspect, tokenizer, max_new_tokens)
    answers = {account: ask(generate, asked) for account, asked in prompts.items()}
    result = attribute_by_watermark(
        GreenList(key, len(tokenizer)),
        tokenizer,
        answers,
        _reference(tokenizer, key, reference_file),
    )
    # the same answers by text too (matched against every logged response): one ranking of both
    by_text = attribute(store, [text for texts in answers.values() for text in texts])
    return _case(
        "watermark-attribution",
        suspect,
        key_id=key.key_id,
        prompts_hashed=sum(len(logged[a]) - len(prompts[a]) for a in logged),
        **result.to_dict(),
        by_text={
            name: getattr(by_text.totals, name)
            for name in ("outputs", "outputs_matched", "fingerprints", "accounts")
        },
        combined=[
            {**asdict(row), "p_adjusted": row.p_adjusted}
            for row in combine_attributions(by_text, result)
        ],
        false_accusation=load_error_rates(settings.data_dir),
    )


def attribution_case(
    settings: Settings,
    store: Store,
    outputs_file: Path,
    threshold: float = 0.3,
    since: datetime | None = None,
    until: datetime | None = None,
    examples: int = 3,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Rank accounts by how far the suspect's outputs match their logged responses beyond
    chance; the case shows the best match of each of the top accounts side by side.
    `progress`: called with the fingerprints read so far (see `attribute`)."""
    outputs = load_suspect_outputs(outputs_file)
    result = attribute(store, outputs, threshold, since, until, progress=progress)
    best = [(a.account_id, a.evidence[0]) for a in result.accounts[:examples] if a.evidence]
    logged = evidence_texts(store, [e.request_id for _, e in best])
    shown = [
        {
            "account_id": account_id,
            "output_index": e.output_index,
            "request_id": e.request_id,
            "jaccard": e.jaccard,
            "output": outputs[e.output_index][:EXCERPT_CHARS],
            "response": redact_for_display(
                logged.get(e.request_id, ""),
                settings.redact_prompts,
                settings.redact_truncate_chars,
            )[:EXCERPT_CHARS],
        }
        for account_id, e in best
    ]
    return _case(
        "attribution", Suspect(outputs_file=outputs_file), **result.to_dict(), examples=shown
    )


def combined_radioactivity(cases: Sequence[dict]) -> list[dict]:
    """One family-wise p-value for each suspect that took several radioactivity tests: Bonferroni
    over its tests (n times the smallest p). Accusing a suspect when any one of n tests falls
    below alpha accuses a clean suspect up to n times as often: the provenance experiment's
    clean students, three tests each, had one test in 60 below 0.01 (2026-12-05). Suspects are
    told apart by what `Suspect.describe` recorded (a folder's path, a file's hash, a URL)."""
    groups: dict[bytes, list[dict]] = {}
    for case in cases:
        if case.get("kind") == "radioactivity":
            identity = orjson.dumps(case["suspect"], option=orjson.OPT_SORT_KEYS)
            groups.setdefault(identity, []).append(case)
    combined = []
    for tests in groups.values():
        if len(tests) < 2:
            continue
        p_values = [t["test"]["score"]["p_value"] for t in tests]
        adjusted = bonferroni(min(p_values), len(p_values))
        combined.append(
            {
                "kind": "radioactivity-combined",
                "suspect": tests[0]["suspect"],
                "tests": [
                    {"mode": t["test"]["mode"], "p_value": t["test"]["score"]["p_value"]}
                    for t in tests
                ],
                "min_p_value": min(p_values),
                "p_adjusted": adjusted,
                "alpha": FALSE_ACCUSATION_ALPHA,
                "significant": adjusted < FALSE_ACCUSATION_ALPHA,
            }
        )
    return combined


def _case(kind: str, suspect: Suspect, **body) -> dict:
    return {
        "kind": kind,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "distillguard_version": full_version(),
        "suspect": suspect.describe(),
        **body,
    }


def write_case(document: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
