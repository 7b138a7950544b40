"""A local location's per-file rewrite locks, which parts of a pass spread over workers take: two files
are rewritten side by side, one file by one part at a time, and never while a whole pass holds the
location's lock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from connectors.snapshot.locations.local import LocalFolder


def waits_for(holder: AbstractContextManager[None], taker: Callable[[], AbstractContextManager[None]]) -> bool:
    """Whether taking `taker` waits while `holder` is held (given half a second to get through)."""
    taken = threading.Event()

    def take() -> None:
        with taker():
            taken.set()

    with holder:
        thread = threading.Thread(target=take)
        thread.start()
        got_through = taken.wait(0.5)
    thread.join(5)
    return not got_through


def test_two_files_are_locked_side_by_side(tmp_path: Path) -> None:
    """A part rewriting one file does not hold up a part rewriting another."""
    folder = LocalFolder(tmp_path)
    assert not waits_for(folder.locked_file("2026-11-01/a.parquet"), lambda: folder.locked_file("2026-11-01/b.parquet"))


def test_one_file_is_locked_by_one_part_at_a_time(tmp_path: Path) -> None:
    """A second rewrite of the same file waits for the first (or it would start from the old file)."""
    folder = LocalFolder(tmp_path)
    assert waits_for(folder.locked_file("2026-11-01/a.parquet"), lambda: folder.locked_file("2026-11-01/a.parquet"))


def test_a_whole_pass_and_a_part_wait_for_each_other(tmp_path: Path) -> None:
    """The location's lock, held by a pass in one process, keeps parts out, and a part keeps such a pass out."""
    folder = LocalFolder(tmp_path)
    assert waits_for(folder.locked(), lambda: folder.locked_file("2026-11-01/a.parquet"))
    assert waits_for(folder.locked_file("2026-11-01/a.parquet"), folder.locked)


def test_the_file_locks_stay_out_of_every_snapshot(tmp_path: Path) -> None:
    """The lock files live in a hidden folder: no snapshot lists them as data."""
    (tmp_path / "2026-11-01").mkdir()
    (tmp_path / "2026-11-01" / "a.parquet").write_bytes(b"x")
    folder = LocalFolder(tmp_path)
    with folder.locked_file("2026-11-01/a.parquet"):
        pass
    assert folder.data_files((".parquet",)) == ["2026-11-01/a.parquet"]
    assert any((tmp_path / ".erasure.locks").iterdir())
