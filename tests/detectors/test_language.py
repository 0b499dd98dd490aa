"""Language identification on real ShareGPT prompts, and the switch rate built on it."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from detectors.language import UNDETERMINED, detect_language, detect_languages, switch_rate
from students.prompts import benign_conversations

HANGUL = re.compile("[\uac00-\ud7af]")


@pytest.fixture(scope="module")
def sessions() -> list[list[str]]:
    """User prompts of each benign ShareGPT session, in order."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for conversation in benign_conversations():
        grouped[conversation.session_id].extend(conversation.user_prompts)
    return list(grouped.values())


def test_real_prompts_are_mostly_english_and_korean_is_found(
    sessions: list[list[str]],
) -> None:
    prompts = [prompt for session in sessions[:3000] for prompt in session]
    languages = detect_languages(prompts)
    known = [code for code in languages if code != UNDETERMINED]
    assert len(known) >= 0.85 * len(prompts)  # only short or mixed text is undetermined
    assert known.count("en") >= 0.9 * len(known)
    korean = [p for p in prompts if len(HANGUL.findall(p)) > 0.5 * sum(c.isalpha() for c in p)]
    assert len(korean) >= 10
    assert detect_languages(korean).count("ko") >= 0.9 * len(korean)


def test_benign_sessions_rarely_switch(sessions: list[list[str]]) -> None:
    rates = [switch_rate(detect_languages(s)) for s in sessions if len(s) >= 3]
    # measured on the 12k benign conversations: 3.4% of sessions switch at least once
    assert sum(rate > 0 for rate in rates) <= 0.06 * len(rates)


def test_an_account_cycling_languages_switches(sessions: list[list[str]]) -> None:
    by_language: dict[str, list[str]] = defaultdict(list)
    for session in sessions:
        for prompt, code in zip(session, detect_languages(session), strict=True):
            if len(prompt) > 40:
                by_language[code].append(prompt)
    cycle = ["en", "ko", "es", "zh"]
    assert all(len(by_language[code]) >= 5 for code in cycle)
    harvest = [by_language[code][i] for i in range(5) for code in cycle]
    assert switch_rate(detect_languages(harvest)) == 1.0


def test_short_text_scripts_and_bad_characters() -> None:
    assert detect_language("continue") == UNDETERMINED
    assert detect_language("") == UNDETERMINED
    assert detect_language("계속") == "ko"
    assert detect_language("继续") == "zh"
    assert detect_language("続けて") == "ja"
    assert detect_language("המשך") == "he"
    text = "Wie kann ich in Python eine Liste sortieren, ohne die ursprüngliche zu ändern?"
    assert detect_language(text + "\x0b\ufffe\ud800") == "de"  # CLD2 rejects these bytes


def test_switch_rate_ignores_undetermined() -> None:
    assert switch_rate([]) == 0.0
    assert switch_rate(["und", "en", "und"]) == 0.0
    assert switch_rate(["en", "und", "en", "en"]) == 0.0
    assert switch_rate(["en", "fr", "und", "en"]) == 1.0
