"""The `redis` kind: deletes a subject's exact keys and every key under its scanned prefixes, and
removes its hash fields (HDEL), set members (SREM) and sorted-set members (ZREM), in one database.

Exact keys and members go in one pipeline each. A prefix is walked with SCAN, its MATCH pattern the
rendered prefix with the glob characters of the value escaped, so `4*` or `[0-9]` match only
themselves; each key found is checked again to start with the rendered prefix before it is
unlinked, in batches. Evidence holds templates and counts, never a key holding a value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from connectors.base import (
    Checked,
    Connector,
    Journal,
    Outcome,
    Part,
    Patterns,
    Preview,
    Subject,
    one_at_a_time,
    retry_blips,
)
from connectors.errors import ConnectorError, PermanentError, TransientError, one_line
from connectors.redis import preview, probe
from connectors.redis.config import PAIRS, RedisConfig

UNLINK_BATCH = 500
STEPS = {"keys": "keys", "scan": "scan", "hashes": "members", "sets": "members", "sorted_sets": "members"}  # journal
GLOB = re.compile(r"([*?\[\]\\])")
REMOVE = {"hashes": "hdel", "sets": "srem", "sorted_sets": "zrem"}
HOLDS = {"hashes": "hexists", "sets": "sismember", "sorted_sets": "zscore"}
TRANSIENT_CODES = frozenset({"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY"})
EXPLAINED = {
    "WRONGTYPE": "the key holds another type than the template's command works on",
    "NOPERM": "the ACL user may not run this command on this key",
    "READONLY": "the server is a read-only replica (a failover under way?)",
    "MOVED": "Redis Cluster is not supported: point url at a standalone server",
    "ASK": "Redis Cluster is not supported: point url at a standalone server",
}
CODES = {redis.exceptions.NoPermissionError: "NOPERM", redis.exceptions.ReadOnlyError: "READONLY",
         redis.exceptions.OutOfMemoryError: "OOM", redis.exceptions.TryAgainError: "TRYAGAIN",
         redis.exceptions.MasterDownError: "MASTERDOWN", redis.exceptions.ClusterDownError: "CLUSTERDOWN",
         redis.exceptions.MovedError: "MOVED", redis.exceptions.AskError: "ASK"}
ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,63}")
Label = tuple[str, int]  # (section, index of the template in it)
Call = tuple[Label, str, tuple[str, ...]]  # the template a command comes from, the command, its arguments


def glob_escaped(text: str) -> str:
    """The text as a SCAN MATCH pattern matching only itself."""
    return GLOB.sub(r"\\\1", text)


class RedisConnector(Connector):
    """Removes a subject's keys, fields and members from one Redis database."""

    kind = "redis"
    config_class = RedisConfig
    config: RedisConfig

    def __init__(self, config: RedisConfig) -> None:
        super().__init__(config)
        self._redis: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        """The client, made on first use (a `url_env` read then); its own retries are off (retry_blips and
        the worker retry)."""
        if self._redis is None:
            c = self.config
            self._redis = redis.Redis.from_url(c.connection_url(), socket_timeout=c.timeout,
                                               socket_connect_timeout=c.timeout, retry=Retry(NoBackoff(), 0))
        return self._redis

    def close(self) -> None:
        """Close the client's connections."""
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def erase(self, subject: Subject) -> Outcome:
        """Delete the subject's keys and keys under its prefixes, then remove its fields and members."""
        removed: dict[Label, int] = {}  # kept across retries: a retry finds only what is left
        return retry_blips(self._erase)(subject, removed)

    def erase_many(self, subjects: Sequence[Subject],
                   journal: Journal | None = None) -> Sequence[Outcome | ConnectorError]:
        """erase() for each subject in turn. With a journal, before each removal the subject's count of its
        step (`keys`, `scan`, `members`) once the removal is answered is told (what is there, read just
        before), so a worker killed after a removal and before the store's record loses no count; a kill
        between two batches of one prefix's keys still loses the first batches' count."""
        return [retry_blips(self._erase)(subject, {}, tell) for subject, tell in one_at_a_time(subjects, journal)]

    def verify(self, subject: Subject) -> int:
        """Keys still there (exact or under a prefix, each once), plus fields and members in other keys."""
        present = self._present(subject)
        return len(present) + self._held([m for m in self._members(subject) if m[2].encode() not in present],
                                         "verify")

    def _erase(self, subject: Subject, removed: dict[Label, int],
               tell: Callable[[str, int], None] | None = None) -> Outcome:
        def add(label: Label, count: Any) -> None:
            removed[label] = removed.get(label, 0) + int(count)

        def before(step: str, n: int) -> None:  # journaled first: the step's count once this removal is answered
            if tell is not None and n:
                tell(step, sum(c for (section, _), c in removed.items() if STEPS[section] == step) + n)

        keys = self._keys(subject)
        if tell is not None:  # what is there now: read only to journal it
            before("keys", sum(map(bool, self._pipelined([(label, "exists", (key,)) for key, label in keys.items()],
                                                         "erase"))))
        unlinks = [(label, "unlink", (key,)) for key, label in keys.items()]
        for (label, _, _), count in zip(unlinks, self._pipelined(unlinks, "erase"), strict=True):
            add(label, count)
        for i, prefix in enumerate(self.config.scan):
            for rendered in prefix.render(subject):
                for batch in self._scanned(rendered, ("scan", i), "erase"):
                    before("scan", len(batch))
                    with self._boundary("erase", self._describe(("scan", i))):
                        add(("scan", i), self.client.unlink(*batch))
        members = self._members(subject)
        if tell is not None:
            before("members", self._held(members, "erase"))
        removals = [((s, i), REMOVE[s], (k, m)) for s, i, k, m in members]
        for (label, _, _), count in zip(removals, self._pipelined(removals, "erase"), strict=True):
            add(label, count)
        return Outcome(sum(removed.values()), self._evidence(removed))

    def _held(self, members: list[tuple[str, int, str, str]], action: str) -> int:
        """How many of these fields and members are there (a sorted-set member with a score of 0 counts)."""
        asked = [((s, i), HOLDS[s], (k, m)) for s, i, k, m in members]
        answers = self._pipelined(asked, action)
        return sum(answer is not None if label[0] == "sorted_sets" else bool(answer)
                   for (label, _, _), answer in zip(asked, answers, strict=True))

    def _keys(self, subject: Subject) -> dict[str, Label]:
        """Each exact key once, with the first template that names it."""
        found: dict[str, Label] = {}
        for i, template in enumerate(self.config.keys):
            for key in template.render(subject):
                found.setdefault(key, ("keys", i))
        return found

    def _members(self, subject: Subject) -> list[tuple[str, int, str, str]]:
        """(section, index, key, member) for every field and member template, filled in."""
        return [(section, i, key, member) for section, i, pair in self.config.pairs()
                for key, member in pair.render(subject)]

    def _present(self, subject: Subject) -> set[bytes]:
        """The subject's exact keys that exist and every key under its prefixes."""
        asked = [(label, "exists", (key,)) for key, label in self._keys(subject).items()]
        answers = self._pipelined(asked, "verify")
        present = {args[0].encode() for (_, _, args), answer in zip(asked, answers, strict=True) if answer}
        for i, prefix in enumerate(self.config.scan):
            for rendered in prefix.render(subject):
                for batch in self._scanned(rendered, ("scan", i), "verify"):
                    present.update(batch)
        return present

    def _scanned(self, rendered: str, label: Label, action: str) -> Iterator[list[bytes]]:
        """Batches of the keys under one rendered prefix, each checked to start with it."""
        prefix, batch = rendered.encode(), []
        with self._boundary(action, self._describe(label)):
            for key in self.client.scan_iter(match=glob_escaped(rendered) + "*", count=self.config.scan_count):
                if key.startswith(prefix):  # the escaped MATCH already says so; a deletion checks twice
                    batch.append(key)
                if len(batch) == UNLINK_BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _pipelined(self, calls: Sequence[Call], action: str) -> list[Any]:
        """The answers of the commands, sent in one pipeline; the first refused fails the call, naming its
        template (the server's own message is left out: it may quote the key)."""
        if not calls:
            return []
        with self._boundary(action):
            pipe = self.client.pipeline(transaction=False)
            for _, command, args in calls:
                getattr(pipe, command)(*args)
            answers = pipe.execute(raise_on_error=False)
        for (label, _, _), answer in zip(calls, answers, strict=True):
            if isinstance(answer, redis.RedisError):
                raise translate(self._where(action, self._describe(label)), answer) from answer
        return list(answers)

    def _evidence(self, removed: dict[Label, int]) -> dict[str, Any]:
        """Per template, what went; sections the system does not configure are left out."""
        evidence: dict[str, Any] = {}
        for section, name in (("keys", "template"), ("scan", "prefix")):
            templates = getattr(self.config, section)
            if templates:
                evidence[section] = [{name: t.text, "removed": removed.get((section, i), 0)}
                                     for i, t in enumerate(templates)]
        for section, i, pair in self.config.pairs():
            evidence.setdefault(section, []).append(
                {"key": pair.key.text, PAIRS[section]: pair.member.text, "removed": removed.get((section, i), 0)})
        return evidence

    def _describe(self, label: Label) -> str:
        """A template as errors name it: `scan[0] 'cache:{user_id}:'`, never with a value."""
        section, i = label
        if section in ("keys", "scan"):
            return f"{section}[{i}] {getattr(self.config, section)[i].text!r}"
        pair = getattr(self.config, section)[i]
        return f"{section}[{i}] (key {pair.key.text!r}, {PAIRS[section]} {pair.member.text!r})"

    def _where(self, action: str, template: str | None = None) -> str:
        return f"redis system {self.config.name!r} ({action}{f', {template}' if template else ''})"

    @contextmanager
    def _boundary(self, action: str, template: str | None = None) -> Iterator[None]:
        """Raise the library's errors from inside as the project's, naming system and template."""
        try:
            yield
        except redis.RedisError as exc:
            raise translate(self._where(action, template), exc) from exc

    def preview(self, subject: Subject) -> Preview:
        """Keys, fields and members per template that erase() would remove, counted as verify counts (preview.py)."""
        return retry_blips(preview.look)(self, subject)

    def export(self, subject: Subject, *, contents: bool = False) -> Iterator[Part]:
        """A note: cached values are counted, not exported (preview.py)."""
        return preview.read(self, subject)

    def check(self, patterns: Patterns | None = None) -> Checked:
        """The server answers, its key space reads, shared keys are of their type (probe.py)."""
        return probe.check(self)


def translate(where: str, exc: redis.RedisError) -> ConnectorError:
    """The project's error for a redis-py error; a server's message is never repeated (it may name a key)."""
    if isinstance(exc, redis.AuthenticationError | redis.exceptions.AuthorizationError):
        return PermanentError(f"{where}: the server refused the credentials ({type(exc).__name__})")
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return TransientError(f"{where}: unreachable: {one_line(exc, 200)}")
    if isinstance(exc, redis.ResponseError):
        code = _code(exc)
        text = f"{where}: {code}" + (f": {EXPLAINED[code]}" if code in EXPLAINED else "")
        return TransientError(text) if code in TRANSIENT_CODES else PermanentError(text)
    return PermanentError(f"{where}: {type(exc).__name__}")


def _code(exc: redis.ResponseError) -> str:
    """The server's error code (`WRONGTYPE`), whichever redis-py version parsed it."""
    for cls, code in CODES.items():
        if isinstance(exc, cls):
            return code
    given = getattr(exc, "status_code", None)
    first = (str(exc).split() or [""])[0]
    return str(given) if given else first if ERROR_CODE.fullmatch(first) else "ERR"
