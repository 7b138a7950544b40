"""Where a snapshot system's files live: a local folder here, an S3 prefix in snapshot_s3.py.

A location lists the data files under its snapshot folders, hands out a local path to read
each one, holds a rewrite lock, replaces a file atomically (write beside, then swap), and
deletes the older versions of a file that still hold a subject, if the store keeps any."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

if TYPE_CHECKING:
    from connectors.snapshot_config import SnapshotConfig
    from connectors.snapshot_s3 import S3Folder

TEMP_SUFFIX = ".erasure-tmp"
LOCK_FILE = ".erasure.lock"
HIDDEN_PREFIXES = (".", "_")  # as pyarrow.dataset: dotfiles, _SUCCESS, _temporary/
T = TypeVar("T")


def open_location(config: SnapshotConfig) -> LocalFolder | S3Folder:
    """The location a snapshot system names: `s3://BUCKET/PREFIX/` or a local folder."""
    if config.location.startswith("s3://"):
        from connectors.snapshot_s3 import S3Folder  # imports this module: loaded on demand

        return S3Folder(config)
    return LocalFolder(Path(config.location))


def in_snapshot(relative: str, suffixes: str | tuple[str, ...]) -> bool:
    """Whether a path under a location is a data file of a snapshot: inside a snapshot folder,
    ending in one of the suffixes, and with no hidden part (`.x`, `_x`) on the way."""
    parts = relative.split("/")
    return (
        len(parts) >= 2
        and relative.endswith(suffixes)
        and all(part and not part.startswith(HIDDEN_PREFIXES) for part in parts)
    )


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
