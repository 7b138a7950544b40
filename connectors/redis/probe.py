"""The redis kind's read-only probe (`erasure check`): the server answers (PING), the database's key
space can be read (DBSIZE), and a hash, set or sorted-set key that names no identifier (a shared key,
`online`) is of the type its command works on (TYPE), else every erasure there fails with WRONGTYPE.
The deleting commands are not tried: Redis has no dry run of them (ACL DRYRUN needs an admin's rights)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from connectors.base import Checked
from connectors.checks import Found
from connectors.redis.config import PAIRS, RedisConfig

TYPES = {"hashes": "hash", "sets": "set", "sorted_sets": "zset"}
COMMANDS = {"hashes": "HDEL", "sets": "SREM", "sorted_sets": "ZREM"}


class Redis(Protocol):
    """The redis connector as read here (connector.py imports this module, never the reverse)."""

    config: RedisConfig

    @property
    def client(self) -> Any:
        """The redis-py client."""

    def _boundary(self, action: str, template: str | None = None) -> AbstractContextManager[None]: ...


def check(connector: Redis) -> Checked:
    """The server, the key space, and the type of each shared key."""
    found = Found()
    with connector._boundary("check"):
        client = connector.client
        client.ping()
        keys = int(client.dbsize())  # type: ignore[arg-type]
        for section, i, pair in connector.config.pairs():
            if pair.key.fields:
                continue
            held = client.type(pair.key.text)
            held = held.decode() if isinstance(held, bytes) else str(held)
            if held not in ("none", TYPES[section]):
                found.problems.append(f"{section}[{i}]: the key {pair.key.text!r} holds a {held}, not a "
                                      f"{TYPES[section]}: {COMMANDS[section]} of a {PAIRS[section]} fails there "
                                      "(WRONGTYPE)")
    found.notes.append(f"{keys} key(s) in the database; the deleting commands (UNLINK, HDEL, SREM, ZREM) are "
                       "not tried: Redis has no dry run of them")
    return found.checked()
