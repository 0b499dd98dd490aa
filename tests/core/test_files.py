"""Files written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.files import write_atomically


def test_a_file_appears_whole_under_its_name_and_nothing_else_is_left(tmp_path: Path) -> None:
    target = tmp_path / "models" / "table.npy"
    write_atomically(target, lambda partial: np.save(partial, np.arange(4)))
    assert np.array_equal(np.load(target), np.arange(4))  # numpy saw its suffix: no ".npy.npy"
    assert [p.name for p in target.parent.iterdir()] == ["table.npy"]


def test_a_failed_write_leaves_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "table.npy"
    np.save(target, np.arange(2))

    def fails(partial: Path) -> None:
        partial.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fails)
    assert np.array_equal(np.load(target), np.arange(2))
