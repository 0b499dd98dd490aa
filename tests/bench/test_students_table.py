"""The student-curve table's verdict: a gain counts only beyond the seed-to-seed noise."""

from __future__ import annotations

from bench.students import Point, markdown, verdicts
from students.distill import Fidelity


def points(kind: str, by_size: dict[int, list[float]]) -> list[Point]:
    return [
        Point(kind, 1_000_000, seed, size, 1.0, Fidelity(size, agreement, 0.1, 5.0))
        for size, agreements in by_size.items()
        for seed, agreement in enumerate(agreements)
    ]


def test_a_gain_must_exceed_twice_the_seed_noise() -> None:
    rising = points("rising", {0: [0.0, 0.0], 64: [0.10, 0.12], 512: [0.30, 0.31]})
    noisy = points("noisy", {0: [0.0, 0.0], 64: [0.05, 0.25], 512: [0.10, 0.30]})
    single = points("single", {64: [0.1], 512: [0.3]})
    result = verdicts(rising + noisy + single)
    assert result["rising"][2] is True and round(result["rising"][0], 3) == 0.195
    assert result["noisy"][2] is False
    assert result["single"][2] is None
    table = markdown(rising, seeds=2)
    assert "| rising | 1.0M | 512 | 0.305 ± 0.007 (0.300–0.310) |" in table
    assert "rises beyond the noise" in table
