"""The redis kind's look without acting: what erase() would remove, per template, counted as verify
counts it (EXISTS for the exact keys, the same escaped SCAN for the prefixes, HEXISTS, SISMEMBER and
ZSCORE for fields and members of keys not removed whole) and laid out as the erase's own evidence
(`{"keys": [{"template": ..., "removed": n}], "scan": [...], "sets": [...]}`), so the two compare
template by template. A key is counted once, under the first template that reaches it, as erase()
unlinks it once. The values are not exported: a cache holds copies, exported where they come from."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from connectors.base import Part, Preview, Subject
from connectors.redis.config import RedisConfig

HOLDS = {"hashes": "hexists", "sets": "sismember", "sorted_sets": "zscore"}
NOT_EXPORTED = "cached values are counted but not exported: they are copies, exported where they come from"
Label = tuple[str, int]


class Redis(Protocol):
    """The redis connector as read here (connector.py imports this module, never the reverse)."""

    config: RedisConfig

    def _keys(self, subject: Subject) -> dict[str, Label]: ...

    def _members(self, subject: Subject) -> list[tuple[str, int, str, str]]: ...

    def _scanned(self, rendered: str, label: Label, action: str) -> Iterator[list[bytes]]: ...

    def _pipelined(self, calls: Sequence[tuple[Label, str, tuple[str, ...]]], action: str) -> list[Any]: ...

    def _evidence(self, removed: dict[Label, int]) -> dict[str, Any]: ...


def look(r: Redis, subject: Subject) -> Preview:
    """Keys, fields and members per template that erase() would remove now."""
    found: dict[Label, int] = {}
    present: set[bytes] = set()
    asked = [(label, "exists", (key,)) for key, label in r._keys(subject).items()]
    for (label, _, (key,)), answer in zip(asked, r._pipelined(asked, "preview"), strict=True):
        if answer:
            present.add(key.encode())
            found[label] = found.get(label, 0) + 1
    for i, prefix in enumerate(r.config.scan):
        for rendered in prefix.render(subject):
            for batch in r._scanned(rendered, ("scan", i), "preview"):
                new = {key for key in batch if key not in present}
                present |= new
                found[("scan", i)] = found.get(("scan", i), 0) + len(new)
    seen: set[tuple[str, str, str]] = set()
    members = []
    for section, i, key, member in r._members(subject):
        if key.encode() not in present and (HOLDS[section], key, member) not in seen:
            seen.add((HOLDS[section], key, member))
            members.append(((section, i), HOLDS[section], (key, member)))
    for (label, _, _), answer in zip(members, r._pipelined(members, "preview"), strict=True):
        held = answer is not None if label[0] == "sorted_sets" else bool(answer)  # a score may be 0
        found[label] = found.get(label, 0) + held
    return Preview(looked=True, items=sum(found.values()), counts=r._evidence(found))


def read(r: Redis, subject: Subject) -> Iterator[Part]:
    """Nothing but a note: see the module's docstring."""
    yield Part("", note=NOT_EXPORTED)
