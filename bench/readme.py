"""The README's measured tables, generated: each benchmark writes its table to
`bench/results/NAME.md`, and the README quotes that file between `<!-- table:NAME -->` and
`<!-- /table:NAME -->`, so nothing measured is pasted by hand.

    python -m bench.readme            # rewrite the README's marked sections from the files
    python -m bench.readme --check    # exit 1 when the README and the files differ

Every file starts with one line that says when, where and with which command it was measured
(`students/measured.py`, which the companion's commands share with the benchmarks).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = re.compile(
    r"(?P<open><!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(?P<close><!-- /table:(?P=name) -->)",
    re.DOTALL,
)


def result_path(name: str) -> Path:
    return RESULTS / f"{name}.md"


def sections(text: str) -> dict[str, str]:
    """The README's marked sections by name, as they are now."""
    return {match["name"]: match["body"] for match in SECTION.finditer(text)}


def render(text: str, results: Path = RESULTS) -> str:
    """`text` with every marked section replaced by its results file."""

    def quote(match: re.Match[str]) -> str:
        path = results / f"{match['name']}.md"
        if not path.exists():
            raise FileNotFoundError(f"README quotes table '{match['name']}': {path} is missing")
        # blank lines around the table: the closing comment must not read as a table row
        return f"{match['open']}\n{path.read_text().strip()}\n\n{match['close']}"

    return SECTION.sub(quote, text)


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    text = README.read_text()
    rendered = render(text)
    if check:
        stale = [n for n, body in sections(text).items() if sections(rendered)[n] != body]
        for name in stale:
            print(
                f"README.md: table '{name}' differs from bench/results/{name}.md", file=sys.stderr
            )
        return 1 if stale else 0
    if rendered != text:
        README.write_text(rendered)
    print(f"README.md: {len(sections(text))} tables from {RESULTS.relative_to(README.parent)}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
