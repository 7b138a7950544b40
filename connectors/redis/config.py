"""The `redis` kind's configuration: where the server is, and the templates naming a subject's data.

    [[systems]]
    name = "cache"
    kind = "redis"
    url_env = "CACHE_REDIS_URL"                  # or url = "redis://cache:6379/0" (no password in the file)
    keys = ["session:{user_id}"]                 # exact keys, deleted
    hashes = [{ key = "profiles", field = "{user_id}" }]            # HDEL
    sets = [{ key = "online", member = "{user_id}" }]               # SREM
    sorted_sets = [{ key = "leaderboard", member = "{user_id}" }]   # ZREM
    scan = ["cache:{user_id}:"]                  # every key under the prefix (SCAN, value escaped)

`url_env` is read when the system is erased, so only the workers that erase it need the variable.
A scanned prefix ends with a separator after its last value, and a value holding the character
that follows its placeholder is refused at intake, so `cache:4:` never reaches `cache:42:` nor
`cache:4:x:`, a key of another subject whose value is `4:x`.
"""

from __future__ import annotations

import itertools
import math
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from redis.connection import parse_url

from connectors.base import ConfigReader, EnvSecret, Subject, SystemConfig, Template
from connectors.errors import PermanentError

SCHEMES = ("redis://", "rediss://", "unix://")
GLOB_CHARACTERS = "*?[]\\"
PAIRS = {"hashes": "field", "sets": "member", "sorted_sets": "member"}  # section -> what the key holds


@dataclass(frozen=True)
class Pair:
    """A key template and the field or member template removed from it (at least one names an identifier)."""

    key: Template
    member: Template

    def render(self, subject: Subject) -> list[tuple[str, str]]:
        """Every (key, member) filled in, the same value in both where both name one type; no repeats."""
        names = sorted(self.key.fields | self.member.fields)
        found: dict[tuple[str, str], None] = {}
        for combo in itertools.product(*(subject.values(n) for n in names)):
            chosen = dict(zip(names, combo, strict=True))
            found[_fill(self.key, chosen), _fill(self.member, chosen)] = None
        return list(found)


@dataclass(frozen=True)
class RedisConfig(SystemConfig):
    """A Redis database and the keys, fields, members and prefixes that hold a subject's data."""

    url: str | EnvSecret = field(default="", repr=False)  # as written, or the variable `url_env` names
    keys: tuple[Template, ...] = ()
    hashes: tuple[Pair, ...] = ()
    sets: tuple[Pair, ...] = ()
    sorted_sets: tuple[Pair, ...] = ()
    scan: tuple[Template, ...] = ()
    scan_count: int = 1000
    timeout: float = 10.0

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "redis"`."""
        reader.only("name", "kind", "url", "url_env", "keys", "hashes", "sets", "sorted_sets", "scan",
                    "scan_count", "timeout")
        keys = tuple(reader.template(f"keys[{i}]", t) for i, t in enumerate(reader.optional("keys", list, [])))
        scan = tuple(_prefix(reader, f"scan[{i}]", t) for i, t in enumerate(reader.optional("scan", list, [])))
        pairs = {section: _pairs(reader, section, member) for section, member in PAIRS.items()}
        if not (keys or scan or any(pairs.values())):
            raise reader.error("keys", "none of keys, hashes, sets, sorted_sets or scan is given: nothing to erase")
        count = reader.optional("scan_count", int, 1000)
        if not 1 <= count <= 100_000:
            raise reader.error("scan_count", f"must be between 1 and 100000, got {count}")
        timeout = reader.raw.get("timeout", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
            raise reader.error("timeout", f"must be a number of seconds above 0, got {timeout!r}")
        return cls(name=reader.text("name"), kind="redis", url=_url(reader), keys=keys, scan=scan,
                   hashes=pairs["hashes"], sets=pairs["sets"], sorted_sets=pairs["sorted_sets"],
                   scan_count=count, timeout=float(timeout))

    def connection_url(self) -> str:
        """The server's URL: as written, or read from `url_env`'s variable now (PermanentError naming the
        variable, never its value, when it is unset or holds no Redis URL)."""
        if isinstance(self.url, str):
            return self.url
        url = self.url.reveal()
        if not is_redis_url(url):
            raise PermanentError(f"redis system {self.name!r}: the environment variable {self.url.name} holds no "
                                 "redis://, rediss:// or unix:// URL")
        return url

    def pairs(self) -> Iterator[tuple[str, int, Pair]]:
        """(section, index, pair) for every hash field, set member and sorted-set member template."""
        for section in PAIRS:
            for i, pair in enumerate(getattr(self, section)):
                yield section, i, pair

    def templates(self) -> Iterator[Template]:
        """Every template: keys, scanned prefixes, and both sides of each pair."""
        yield from self.keys + self.scan
        for _, _, pair in self.pairs():
            yield from (pair.key, pair.member)

    @property
    def identifier_types(self) -> frozenset[str]:
        """Every type named by a template."""
        return frozenset(f for t in self.templates() for f in t.fields)

    def problem_with(self, subject: Subject) -> str | None:
        """Refuse a value holding the separator that ends it in a template: it could name another's keys."""
        for id_type in sorted(self.identifier_types):
            if "" in subject.values(id_type):
                return f"an empty {id_type} cannot be used in redis templates"
        for template in self.templates():
            for (_, held), (after, _) in itertools.pairwise(template.parts):
                if held and after and any(after[0] in value for value in subject.values(held)):
                    return f"a {held} holding {after[0]!r} cannot be used in the redis template {template.text!r}"
        return None


def _fill(template: Template, chosen: Mapping[str, str]) -> str:
    return "".join(literal + (chosen[f] if f else "") for literal, f in template.parts)


def is_redis_url(url: str) -> bool:
    """Whether the text is a URL redis-py connects to (redis://, rediss:// or unix://)."""
    if not url.lower().startswith(SCHEMES):
        return False
    try:
        parse_url(url)
    except ValueError:
        return False
    return True


def _url(reader: ConfigReader) -> str | EnvSecret:
    """`url`, or the variable `url_env` names (read when erasing); exactly one. Errors never repeat the URL."""
    if ("url" in reader.raw) == ("url_env" in reader.raw):
        raise reader.error("url", "give either url or url_env (an environment variable holding the URL)")
    if "url_env" in reader.raw:
        return reader.secret("url_env")
    url = reader.text("url")
    if not is_redis_url(url):
        raise reader.error("url", "must be a redis://, rediss:// or unix:// URL (redis://host:6379/0)")
    return url


def _prefix(reader: ConfigReader, key: str, text: Any) -> Template:
    """A scanned prefix: no glob characters in its literal parts, and a separator after each value."""
    template = reader.template(key, text)
    if any(c in literal for literal, _ in template.parts for c in GLOB_CHARACTERS):
        raise reader.error(key, f"{template.text!r} holds a glob character (* ? [ ] \\): write the prefix literally")
    for (_, id_type), (after, _) in itertools.pairwise(template.parts):
        if id_type is not None and not after:
            raise reader.error(key, f"{template.text!r}: each placeholder must be followed by a separator")
    last, id_type = template.parts[-1]
    if id_type is not None or not last or last[0].isalnum():
        raise reader.error(key, f"{template.text!r} must end with a separator after the value, like "
                                "'cache:{user_id}:', or it matches neighbours (4 would take 42)")
    return template


def _pairs(reader: ConfigReader, section: str, member: str) -> tuple[Pair, ...]:
    """`hashes = [{ key = "...", field = "..." }]`, or `member` for sets and sorted sets."""
    pairs = []
    for i, raw in enumerate(reader.optional(section, list, [])):
        table = reader.child(section, raw, i)
        table.only("key", member)
        pair = Pair(_literal_or_template(table, "key"), _literal_or_template(table, member))
        if not (pair.key.fields or pair.member.fields):
            raise table.error(member, f"neither key nor {member} names an identifier: it would match every subject")
        pairs.append(pair)
    return tuple(pairs)


def _literal_or_template(reader: ConfigReader, key: str) -> Template:
    """A template, or plain text naming no identifier (a shared key such as `online`)."""
    text = reader.require(key, str)
    try:
        literal = all(name is None for _, name, _, _ in string.Formatter().parse(text))
    except ValueError:
        literal = False  # reader.template says what is wrong
    if text and literal:
        return Template(text, tuple((part, None) for part, _, _, _ in string.Formatter().parse(text)))
    return reader.template(key, text)
