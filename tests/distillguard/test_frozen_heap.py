"""A long-running role leaves what it built before running (the calibration above all) out of
the garbage collector's scans, and gets it back when it stops; garbage made before is collected
first, so none of it is kept for good."""

from __future__ import annotations

import gc
import weakref

import pytest

from distillguard.wiring import heap_built_so_far_frozen


class Node:
    """A container the collector tracks; two of them referring to each other make a cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def tracked(obj: object) -> bool:
    """Whether a collection of any generation would scan `obj` (frozen objects are in none)."""
    return any(other is obj for other in gc.get_objects())


def test_built_objects_are_frozen_while_the_role_runs_and_handed_back_after() -> None:
    calibration = {"table": [[float(i)] for i in range(100)]}
    first, second = Node(), Node()
    first.other, second.other = second, first
    garbage = weakref.ref(first)
    del first, second  # a cycle only the collector can free
    with heap_built_so_far_frozen():
        assert garbage() is None  # collected before the freeze, not frozen with the rest
        assert gc.get_freeze_count() > 100
        assert not tracked(calibration)
        made_while_running: list[int] = []
        assert tracked(made_while_running)
    assert gc.get_freeze_count() == 0
    assert tracked(calibration)


def test_the_heap_is_handed_back_when_the_role_fails() -> None:
    with pytest.raises(RuntimeError), heap_built_so_far_frozen():
        raise RuntimeError("the role stopped")
    assert gc.get_freeze_count() == 0
