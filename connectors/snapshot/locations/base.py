"""What every snapshot location is (a local folder, an S3 prefix): it lists the data files under
its snapshot folders (and their sizes), hands out a local path to read each one, holds a rewrite
lock (the whole location's, or one file's beside other files'), replaces a
file atomically (write beside, then swap), and deletes the older versions of a file that still
hold a subject, if the store keeps any."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import BinaryIO, Protocol, TypeVar

TEMP_SUFFIX = ".erasure-tmp"
LOCK_FILE = ".erasure.lock"
HIDDEN_PREFIXES = (".", "_")  # as pyarrow.dataset: dotfiles, _SUCCESS, _temporary/
T = TypeVar("T")


def in_snapshot(relative: str, suffixes: str | tuple[str, ...]) -> bool:
    """Whether a path under a location is a data file of a snapshot: inside a snapshot folder,
    ending in one of the suffixes, and with no hidden part (`.x`, `_x`) on the way."""
    parts = relative.split("/")
    return (
        len(parts) >= 2
        and relative.endswith(suffixes)
        and all(part and not part.startswith(HIDDEN_PREFIXES) for part in parts)
    )


class Location(Protocol):
    """Where a system's files live (a local folder, an object store prefix)."""

    def exists(self) -> bool:
        """Whether the location is there."""

    def data_files(self, suffixes: tuple[str, ...]) -> list[str]:
        """`SNAPSHOT/.../FILE` paths ending in one of the suffixes, sorted, hidden ones left out."""

    def reading(self, rel: str) -> AbstractContextManager[str]:
        """A local path holding the file's current content while the context lasts."""

    def replace(self, rel: str, write: Callable[[BinaryIO], T], before_swap: Callable[[T], None] | None = None) -> T:
        """Write a new version of the file and swap it in atomically; write's result, given to
        `before_swap` once the new version is whole and before it is swapped in."""

    def size(self, rel: str) -> int:
        """The file's size in bytes."""

    def locked(self) -> AbstractContextManager[None]:
        """Hold the location's rewrite lock."""

    def locked_file(self, rel: str) -> AbstractContextManager[None]:
        """Hold one file's rewrite lock: other files may be rewritten meanwhile (by other workers'
        parts of a pass), never while another holds the location's lock."""

    def purge_history(self, rel: str, holds: Callable[[str], bool]) -> int:
        """Delete the file's older versions whose content (a local path) holds a subject; how many."""
