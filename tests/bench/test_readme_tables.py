"""The README's measured tables are the files the benchmarks write (`bench/results/*.md`),
quoted by `scripts/readme-tables`: nothing measured is pasted by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.detection import readme_table
from bench.readme import README, RESULTS, render, sections
from students.measured import measured_by, write_table


def test_the_readme_quotes_every_results_file_unchanged() -> None:
    text = README.read_text()
    quoted = sections(text)
    assert {"detection-lowo", "api", "validate", "provenance"} <= set(quoted)
    for name, body in quoted.items():
        assert body.strip() == (RESULTS / f"{name}.md").read_text().strip(), (
            f"README table '{name}' differs from bench/results/{name}.md: run scripts/readme-tables"
        )
    assert render(text) == text


def test_every_results_file_says_how_it_was_measured() -> None:
    for path in RESULTS.glob("*.md"):
        header = path.read_text().splitlines()[0]
        assert header.startswith("Measured ") and "`" in header, path


def test_render_replaces_only_the_marked_section(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("Measured today.\n\n| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- table:t -->\nold figures\n<!-- /table:t -->\noutro\n"
    rendered = render(text, tmp_path)
    assert rendered == (
        "intro\n<!-- table:t -->\n\nMeasured today.\n\n| a |\n|---|\n| 1 |\n\n"
        "<!-- /table:t -->\noutro\n"
    )
    assert render(rendered, tmp_path) == rendered
    with pytest.raises(FileNotFoundError, match="missing"):
        render("<!-- table:absent -->\n<!-- /table:absent -->", tmp_path)


def test_a_results_file_is_a_header_then_the_table_without_its_title(tmp_path: Path) -> None:
    header = measured_by("python -m bench.x --flag", seconds=578)
    assert header.endswith("`python -m bench.x --flag`, wall 9 min 38 s.")
    path = write_table(tmp_path / "x.md", "# Title (today)\n\n| a |\n|---|\n", header)
    assert path.read_text() == f"{header}\n\n| a |\n|---|\n"


def test_the_detection_table_has_the_readme_columns_and_formats() -> None:
    """One detector's result, as `bench.detection` builds it, gives the README's row."""
    inf = float("inf")
    row = {
        "roc_auc": 0.99,
        "tpr_at_1pct": 0.0,
        "median_queries": inf,
        "p90_queries": inf,
        "campaign_recall": None,
    }
    result = {
        "detector": "ours",
        "events_per_s": 1000.0,
        "events_per_s_benign": 2219.4,
        "hard_negatives": ["a", "b", "c"],
        "hard_negatives_flagged": ["a", "b", "c"],
        "rows": [
            {**row, "strategy": "dataset_replay"},
            {**row, "strategy": "paraphrase_blending", "roc_auc": 0.9721},
            {**row, "strategy": "multi_account_campaign", "campaign_recall": 1.0},
            {
                **row,
                "strategy": "all attacks",
                "roc_auc": 0.9962,
                "tpr_at_1pct": 0.945,
                "median_queries": 3.0,
                "p90_queries": 35.0,
            },
        ],
    }
    lines = readme_table([result]).splitlines()
    seeded = (RESULTS / "detection.md").read_text().splitlines()
    assert lines[:2] == seeded[2:4]  # the measured file's header row and rule
    assert lines[2] == (
        "| ours (tiered) | 0.972 (paraphrase_blending) | 0.996 | 0.945 | 3 / 35 | 1.00 | 3/3 "
        "| 2,219 |"
    )
    small = readme_table([{k: v for k, v in result.items() if k != "events_per_s_benign"}])
    assert small.splitlines()[0].endswith("| events/s (small batches) |")
    assert small.splitlines()[2].endswith("| 1,000 |")  # not labelled as benign traffic
