"""A snapshot location on a local disk (or a mounted bucket): files read in place, a file lock
(`flock`: the location's taken exclusive by a whole pass, shared by a part of a pass beside a lock
of each file it rewrites, under `.erasure.locks/`), replaced by writing beside and swapping in; a
folder keeps no older versions."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

from connectors.snapshot.locations.base import LOCK_FILE, TEMP_SUFFIX, in_snapshot

FILE_LOCKS = ".erasure.locks"  # a hidden folder: no snapshot's, and no reader's

T = TypeVar("T")


class LocalFolder:
    """The files of a snapshot location on a local disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self) -> bool:
        """Whether the location is a folder."""
        return self.root.is_dir()

    def data_files(self, suffixes: str | tuple[str, ...]) -> list[str]:
        """Each data file under a snapshot folder, relative to the location, sorted."""
        endings = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
        found = []
        for path in self.root.glob("*/**/*"):
            relative = path.relative_to(self.root).as_posix()
            if in_snapshot(relative, endings) and path.is_file():
                found.append(relative)
        return sorted(found)

    def path(self, relative: str) -> str:
        """A path pyarrow can open."""
        return str(self.root / relative)

    @contextmanager
    def reading(self, relative: str) -> Iterator[str]:
        """The file's own path: a folder needs no copy to be read."""
        yield self.path(relative)

    def size(self, relative: str) -> int:
        """The file's size in bytes."""
        return (self.root / relative).stat().st_size

    def locked(self) -> AbstractContextManager[None]:
        """Hold the location's rewrite lock: two erasures rewriting one file at once would
        each start from the old file, and the second to finish would bring back the first's rows."""
        return _flock(self.root / LOCK_FILE, fcntl.LOCK_EX)

    @contextmanager
    def locked_file(self, relative: str) -> Iterator[None]:
        """Hold the location's lock shared and the file's own exclusive: parts rewriting other files
        go on, a whole pass waits (and is waited for)."""
        folder = self.root / FILE_LOCKS
        folder.mkdir(exist_ok=True)
        with _flock(self.root / LOCK_FILE, fcntl.LOCK_SH), \
                _flock(folder / hashlib.sha256(relative.encode()).hexdigest()[:32], fcntl.LOCK_EX):
            yield

    def replace(self, relative: str, write: Callable[[BinaryIO], T],
                before_swap: Callable[[T], None] | None = None) -> T:
        """Write a new version of a file beside it, then swap it in; on failure keep the old one."""
        target = self.root / relative
        temp = target.with_name(f".{target.name}{TEMP_SUFFIX}")
        try:
            with open(temp, "wb") as sink:
                result = write(sink)
                sink.flush()
                os.fsync(sink.fileno())
            shutil.copymode(target, temp)
            if before_swap is not None:
                before_swap(result)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        return result

    def purge_history(self, relative: str, holds: Callable[[str], bool]) -> int:
        """Nothing to delete: a folder keeps no older versions of a file."""
        return 0


@contextmanager
def _flock(path: Path, how: int) -> Iterator[None]:
    """Hold an flock on a file (made if missing) while the context lasts."""
    with open(path, "a") as lock:
        fcntl.flock(lock, how)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
