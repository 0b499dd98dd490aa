"""Template skeletons: what is left of a prompt once its slot fillers are masked.

A campaign that words each account's harvest through its own template ("Implement {title} in
{lang} ...", "Use this as your brief:\\n{prompt}") shares no text between accounts, but its
prompts collide once the fillers are masked: numbers, quoted strings, code and identifiers,
links, and runs of capitalised words (titles, names, languages). Each prompt gives up to three
skeleton keys: the whole masked prompt, and for a prompt of several lines its first and last
line when they are short (the frame a wrapper puts around a long body). Keys whose skeleton has
too few literal words ("Hi ⟨T⟩!") are not kept: they are everyone's.

Whether a skeleton is evidence is decided by calibration (one that several benign accounts use
is an app's or a habit, not a campaign), and two accounts share it as a template only when they
filled it differently (the same text twice is the near-duplicate evidence, not this).

>>> mask('Solve "Two Sum" in Python. Give the complete code; n = 10.')
'⟨T⟩ ⟨q⟩ in ⟨T⟩. ⟨T⟩ the complete code; n = ⟨n⟩.'
>>> mask("Implement Minimum Number of K Consecutive Bit Flips in C++ and justify it.")
'⟨T⟩ and justify it.'
>>> a = skeleton_keys("Tell me everything about Final Fantasy VII, in detail please.")
>>> a == skeleton_keys("Tell me everything about Stony Brook University, in detail please.")
True
>>> framed = skeleton_keys("Use this as your brief:\\nAct as a chef. Plan a menu for six people.")
>>> other = skeleton_keys("Use this as your brief:\\nWrite a haiku about green tea.")
>>> [kind[0] for kind in framed], other[1] == framed[1], other[2] == framed[2]
(['w', 'f', 'l'], True, False)
>>> skeleton_keys("Hello there!"), skeleton_keys("hi")
([], [])
"""

from __future__ import annotations

import hashlib
import re

MAX_CHARS = 2000  # prompts are cut here, as for hashing and embedding
FRAME_WORDS = 16  # a first or last line this short can be a wrapper's frame
MIN_LITERAL_WORDS = 3  # a skeleton needs this many unmasked words to say anything

_CODE = re.compile(r"```.*?(?:```|$)", re.S)
_URL = re.compile(r"\b(?:https?://|www\.)\S+|\b[\w.+-]+@[\w-]+\.[\w.]+")
_TICK = re.compile(r"`[^`\n]{1,200}`")
_QUOTE = re.compile(r"\"[^\"\n]{1,200}\"|“[^”\n]{1,200}”|(?<!\w)'[^'\n]{1,200}'(?!\w)")
_CAMEL_CASE = r"[a-z]+[A-Z]\w*"
_IDENT = re.compile(rf"\b(?:[A-Za-z]+_\w+|{_CAMEL_CASE}|\w+\(\))")
_CAMEL = re.compile(rf"\b{_CAMEL_CASE}")  # `_IDENT` where the text has no "_" and no "()"
_CAMEL_HINT = re.compile(r"[a-z][A-Z]")  # what every `_CAMEL` match holds
_NUMBER = re.compile(r"[$€£]?\d(?:[\d,._:/]*\d)?%?")
_JOIN = r"(?:of|the|a|an|and|in|on|for|to|with|at|by|from|or|de|la|le|von|van|der|vs\.?|&|-|–)"
# Word characters, and dots inside a word ("U.S", "v2.0"), as runs of a class: the same matches as
# one alternation per character, which was the slowest part of masking a long prompt.
_WORD = r"[\w'’+#-]*(?:\.(?=\w)[\w'’+#-]*)*"
_TITLE = re.compile(rf"\b[A-Z]{_WORD}(?:\s+(?:{_JOIN}\s+)*[A-Z0-9]{_WORD})*")
_DIGIT = re.compile(r"\d")
# Runs of blanks become one space; a lone space already is one (not rewriting each saves time).
_SPACE = re.compile(r"[ \t]{2,}|\t")
_LITERAL = re.compile(r"(?<![⟨\w])[a-z][a-z'’-]*")


def mask(text: str) -> str:
    """The text with its slot fillers replaced by placeholders. A pattern whose required
    character is absent cannot match, so it is not run (most prompts have no code, link or
    quote, and this runs on every request)."""
    if "`" in text:
        text = _CODE.sub("⟨code⟩", text)
    if "@" in text or "http" in text or "www." in text:
        text = _URL.sub("⟨u⟩", text)
    if "`" in text:
        text = _TICK.sub("⟨c⟩", text)
    if '"' in text or "“" in text or "'" in text:
        text = _QUOTE.sub("⟨q⟩", text)
    if "_" in text or "()" in text:
        text = _IDENT.sub("⟨i⟩", text)
    elif _CAMEL_HINT.search(text):
        text = _CAMEL.sub("⟨i⟩", text)
    if _DIGIT.search(text):
        text = _NUMBER.sub("⟨n⟩", text)
    text = _TITLE.sub("⟨T⟩", text)
    if "  " in text or "\t" in text:
        text = _SPACE.sub(" ", text)
    return text.strip()


def skeleton_keys(prompt: str) -> list[str]:
    """Hashed skeletons of a prompt: whole ("w"), first line ("f") and last line ("l")."""
    lines = [line.strip() for line in prompt[:MAX_CHARS].strip().splitlines() if line.strip()]
    if not lines:
        return []
    parts = [("w", "\n".join(lines))]
    if len(lines) >= 2:
        parts += [
            (kind, line)
            for kind, line in (("f", lines[0]), ("l", lines[-1]))
            if len(line.split(maxsplit=FRAME_WORDS)) <= FRAME_WORDS
        ]
    return [key for kind, text in parts if (key := _key(kind, mask(text)))]


def opening_key(prompt: str) -> str:
    """The hashed skeleton of how a prompt opens (the first `FRAME_WORDS` words of its first
    line), or "" when the opening says nothing (too few literal words). An app or a pipeline
    opens its prompts the same way whatever it fills in, so the openings several benign
    accounts use are a population's habits (the `unusual_openings` signal)."""
    for line in prompt[:MAX_CHARS].splitlines():
        words = line.split(maxsplit=FRAME_WORDS)[:FRAME_WORDS]
        if words:
            return _key("o", mask(" ".join(words)))
    return ""


def _key(kind: str, skeleton: str) -> str:
    """A skeleton's key, or "" when it has too few literal words to say anything."""
    if len(_LITERAL.findall(skeleton)) < MIN_LITERAL_WORDS:
        return ""
    return kind + hashlib.blake2b(f"{kind}|{skeleton}".encode(), digest_size=8).hexdigest()
