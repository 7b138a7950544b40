"""Where a snapshot system's files live: a local folder today; an object store slots in here.

A location lists the data files under its snapshot folders, lets pyarrow read them, holds a
rewrite lock, and replaces a file atomically (write beside, then swap)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TypeVar

TEMP_SUFFIX = ".erasure-tmp"
LOCK_FILE = ".erasure.lock"
HIDDEN_PREFIXES = (".", "_")  # as pyarrow.dataset: dotfiles, _SUCCESS, _temporary/
T = TypeVar("T")


class LocalFolder:
    """The files of a snapshot location on a local disk; an object store will slot in here."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def exists(self) -> bool:
        """Whether the location is a folder."""
        return self.root.is_dir()

    def data_files(self, suffix: str) -> list[str]:
        """Each data file under a snapshot folder, relative to the location, sorted."""
        found = []
        for path in self.root.glob(f"*/**/*{suffix}"):
            relative = path.relative_to(self.root)
            if not any(part.startswith(HIDDEN_PREFIXES) for part in relative.parts) and path.is_file():
                found.append(relative.as_posix())
        return sorted(found)

    def path(self, relative: str) -> str:
        """A path pyarrow can open."""
        return str(self.root / relative)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the location's rewrite lock: two erasures rewriting one file at once would
        each start from the old file, and the second to finish would bring back the first's rows."""
        with open(self.root / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def replace(self, relative: str, write: Callable[[BinaryIO], T]) -> T:
        """Write a new version of a file beside it, then swap it in; on failure keep the old one."""
        target = self.root / relative
        temp = target.with_name(f".{target.name}{TEMP_SUFFIX}")
        try:
            with open(temp, "wb") as sink:
                result = write(sink)
                sink.flush()
                os.fsync(sink.fileno())
            shutil.copymode(target, temp)
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
