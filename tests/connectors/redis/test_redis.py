"""The redis connector against a real Redis server, each test on a database of its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from connectors.base import Subject
from connectors.errors import PermanentError, TransientError
from connectors.redis.connector import RedisConnector, glob_escaped
from tests.helpers import free_port, redis_connector

Dumped = Callable[[], dict[bytes, bytes]]  # the `dumped` fixture: every key of the database with its DUMP
TYPES = frozenset({"user_id", "email", "handle"})


def connector(url: str, **keys: Any) -> RedisConnector:
    """A redis system on the URL with the given templates."""
    return redis_connector({"name": "cache", "kind": "redis", "url": url} | keys, TYPES)


def user(*ids: str) -> Subject:
    """A subject known by user ids."""
    return Subject({"user_id": ids})


def test_exact_keys_of_the_subject_are_deleted_and_only_them(redis_url: str, db: redis.Redis, dumped: Dumped) -> None:
    """`session:{user_id}` deletes session:4, never session:42, session:4:x or session:40."""
    db.mset({"session:4": "a", "profile:4": "p"})
    db.hset("session:42", "t", "1")
    db.mset({"session:4:x": "n", "session:40": "n", "Session:4": "n"})
    neighbours = {k: v for k, v in dumped().items() if k not in (b"session:4", b"profile:4")}
    with connector(redis_url, keys=["session:{user_id}", "profile:{user_id}"]) as c:
        assert c.verify(user("4")) == 2
        outcome = c.erase(user("4"))
        assert outcome.items_erased == 2
        assert outcome.evidence == {"keys": [{"template": "session:{user_id}", "removed": 1},
                                             {"template": "profile:{user_id}", "removed": 1}]}
        assert c.verify(user("4")) == 0
    assert dumped() == neighbours


def test_hash_fields_set_and_sorted_set_members_are_removed_and_only_them(
        redis_url: str, db: redis.Redis, dumped: Dumped) -> None:
    """HDEL, SREM and ZREM take member 4 and leave 42, 40 and 4x in the same keys, and other keys whole."""
    db.hset("profiles", mapping={"4": "me", "42": "n", "40": "n", "4x": "n"})
    db.sadd("online", "4", "42", "40", "4x")
    db.zadd("board", {"4": 0, "42": 1, "40": 2, "4x": 3})  # a score of 0 still counts as there
    db.hset("user:4", mapping={"email": "a@x", "theme": "dark"})
    db.hset("user:42", mapping={"email": "b@x"})
    before = dumped()
    with connector(redis_url, hashes=[{"key": "profiles", "field": "{user_id}"},
                                      {"key": "user:{user_id}", "field": "email"}],
                   sets=[{"key": "online", "member": "{user_id}"}],
                   sorted_sets=[{"key": "board", "member": "{user_id}"}]) as c:
        assert c.verify(user("4")) == 4
        outcome = c.erase(user("4"))
        assert c.verify(user("4")) == 0
    assert outcome.items_erased == 4
    assert outcome.evidence == {
        "hashes": [{"key": "profiles", "field": "{user_id}", "removed": 1},
                   {"key": "user:{user_id}", "field": "email", "removed": 1}],
        "sets": [{"key": "online", "member": "{user_id}", "removed": 1}],
        "sorted_sets": [{"key": "board", "member": "{user_id}", "removed": 1}]}
    assert db.hgetall("profiles") == {b"42": b"n", b"40": b"n", b"4x": b"n"}
    assert db.smembers("online") == {b"42", b"40", b"4x"}
    assert db.zrange("board", 0, -1, withscores=True) == [(b"42", 1.0), (b"40", 2.0), (b"4x", 3.0)]
    assert db.hgetall("user:4") == {b"theme": b"dark"}
    assert dumped()[b"user:42"] == before[b"user:42"]


def test_a_scanned_prefix_takes_every_key_under_it_and_no_neighbour(
        redis_url: str, db: redis.Redis, dumped: Dumped) -> None:
    """`cache:{user_id}:` takes cache:4:* (every type), never cache:42:*, cache:4 or cache:4x:*."""
    db.mset({"cache:4:a": "1", "cache:4:": "2", "cache:4:b:c": "3"})
    db.rpush("cache:4:list", "x")
    db.mset({"cache:42:a": "n", "cache:4": "n", "cache:4x:a": "n", "cache:40:": "n", "xcache:4:a": "n"})
    db.sadd("cache:42:set", "4")
    neighbours = {k: v for k, v in dumped().items() if not k.startswith(b"cache:4:")}
    with connector(redis_url, scan=["cache:{user_id}:"]) as c:
        assert c.verify(user("4")) == 4
        outcome = c.erase(user("4"))
        assert (outcome.items_erased, c.verify(user("4"))) == (4, 0)
    assert outcome.evidence == {"scan": [{"prefix": "cache:{user_id}:", "removed": 4}]}
    assert dumped() == neighbours


@pytest.mark.parametrize("value", ["4*", "*", "[0-9]", "4?", "?", "4\\", "\\*", "[^4]", "4]"])
def test_glob_characters_in_a_value_match_only_themselves(
        value: str, redis_url: str, db: redis.Redis, dumped: Dumped) -> None:
    """A handle such as `4*` or `[0-9]` is escaped in SCAN's MATCH: only the keys under its own prefix go."""
    mine = f"cache:{value}:data"
    db.set(mine, "me")
    for other in ["4", "42", "7", "x", "*x", "4\\\\", "[0-9]x", "4]]", "-"]:
        if other != value:
            db.set(f"cache:{other}:data", "n")
    neighbours = {k: v for k, v in dumped().items() if k != mine.encode()}
    subject = Subject({"handle": (value,)})
    with connector(redis_url, scan=["cache:{handle}:"]) as c:
        assert c.verify(subject) == 1
        assert c.erase(subject).items_erased == 1
        assert c.verify(subject) == 0
    assert dumped() == neighbours


def test_more_keys_than_a_batch_are_all_deleted(redis_url: str, db: redis.Redis) -> None:
    """A prefix holding 1,234 keys, walked 100 at a time, is emptied; the neighbour's 1,000 stay."""
    db.mset({f"c:4:{i}": "x" for i in range(1234)})
    db.mset({f"c:42:{i}": "x" for i in range(1000)})
    with connector(redis_url, scan=["c:{user_id}:"], scan_count=100) as c:
        assert c.erase(user("4")).items_erased == 1234
        assert c.verify(user("4")) == 0
    assert len(list(db.scan_iter(match="c:42:*", count=1000))) == 1000


def test_a_second_erase_finds_nothing(redis_url: str, db: redis.Redis) -> None:
    """Erasing twice removes nothing the second time, and says so per template."""
    db.set("s:4", "x")
    db.set("c:4:a", "x")
    db.sadd("online", "4")
    with connector(redis_url, keys=["s:{user_id}"], scan=["c:{user_id}:"],
                   sets=[{"key": "online", "member": "{user_id}"}]) as c:
        assert c.erase(user("4")).items_erased == 3
        again = c.erase(user("4"))
    assert again.items_erased == 0
    assert [e["removed"] for section in again.evidence.values() for e in section] == [0, 0, 0]


def test_every_value_of_a_subject_is_erased(redis_url: str, db: redis.Redis) -> None:
    """A subject known by two user ids loses the keys and members of both, and no one else's."""
    db.mset({"s:4": "x", "s:7": "x", "s:47": "n"})
    db.sadd("online", "4", "7", "47")
    with connector(redis_url, keys=["s:{user_id}"], sets=[{"key": "online", "member": "{user_id}"}]) as c:
        assert c.erase(user("4", "7")).items_erased == 4
    assert (db.keys("s:*"), db.smembers("online")) == ([b"s:47"], {b"47"})


def test_a_key_named_twice_is_counted_once(redis_url: str, db: redis.Redis) -> None:
    """A key that is exact and under a prefix, and a hash both deleted and HDEL'd, count once: erase and
    verify agree."""
    db.set("c:4:profile", "x")
    db.set("c:4:other", "x")
    db.hset("u:4", "email", "a@x")
    with connector(redis_url, keys=["c:{user_id}:profile", "u:{user_id}"], scan=["c:{user_id}:"],
                   hashes=[{"key": "u:{user_id}", "field": "email"}]) as c:
        before = c.verify(user("4"))
        outcome = c.erase(user("4"))
    assert before == outcome.items_erased == 3


def test_evidence_holds_templates_and_counts_never_a_value(redis_url: str, db: redis.Redis) -> None:
    """The evidence names templates; no key, field or member holding the value appears in it."""
    db.set("s:a@example.org", "x")
    db.set("c:a@example.org:1", "x")
    db.hset("emails", "a@example.org", "1")
    subject = Subject({"email": ("a@example.org",)})
    with connector(redis_url, keys=["s:{email}"], scan=["c:{email}:"],
                   hashes=[{"key": "emails", "field": "{email}"}]) as c:
        outcome = c.erase(subject)
    assert outcome.items_erased == 3
    assert "example.org" not in json.dumps(outcome.evidence)


def test_a_refused_connection_is_transient() -> None:
    """Nothing listening at the URL: a TransientError naming the system, retried later."""
    with connector(f"redis://127.0.0.1:{free_port()}/11", keys=["s:{user_id}"]) as c:
        with pytest.raises(TransientError, match=r"^redis system 'cache' \(erase\): unreachable"):
            c.erase(user("4"))
        with pytest.raises(TransientError, match="unreachable"):
            c.verify(user("4"))


def test_refused_credentials_are_permanent(redis_url: str) -> None:
    """A user and password the server does not know: a PermanentError, not retried, the password never shown."""
    url = redis_url.replace("redis://", f"redis://nobody-{uuid.uuid4().hex[:8]}:hunter2@")
    with connector(url, keys=["s:{user_id}"]) as c:
        with pytest.raises(PermanentError, match="refused the credentials") as caught:
            c.verify(user("4"))
    assert "hunter2" not in str(caught.value)


def test_url_env_is_read_when_erasing_and_unset_fails_changing_nothing(
        redis_url: str, db: redis.Redis, dumped: Dumped, monkeypatch: pytest.MonkeyPatch) -> None:
    """A system with `url_env` unset loads, but erase() and verify() fail with a PermanentError naming the
    variable, and the database is untouched; with the variable set, the same connector erases."""
    db.mset({"s:4": "a", "s:42": "n"})
    before = dumped()
    monkeypatch.delenv("ERASURE_TEST_CACHE_URL", raising=False)
    raw = {"name": "cache", "kind": "redis", "url_env": "ERASURE_TEST_CACHE_URL", "keys": ["s:{user_id}"]}
    with redis_connector(raw, TYPES) as c:
        with pytest.raises(PermanentError, match="^the environment variable ERASURE_TEST_CACHE_URL is not set$"):
            c.erase(user("4"))
        with pytest.raises(PermanentError, match="ERASURE_TEST_CACHE_URL is not set"):
            c.verify(user("4"))
        assert dumped() == before
        monkeypatch.setenv("ERASURE_TEST_CACHE_URL", redis_url)
        assert c.erase(user("4")).items_erased == 1
    assert set(dumped()) == {b"s:42"}


def test_a_key_of_another_type_fails_naming_the_template_not_the_value(redis_url: str, db: redis.Redis) -> None:
    """HDEL on a string key is WRONGTYPE: a PermanentError naming the template, never the key."""
    db.set("u:987654", "a string")
    with connector(redis_url, hashes=[{"key": "u:{user_id}", "field": "email"}]) as c:
        with pytest.raises(PermanentError, match=r"hashes\[0\] \(key 'u:\{user_id\}', field 'email'\)\): WRONGTYPE") \
                as caught:
            c.erase(user("987654"))
    assert "987654" not in str(caught.value)
    assert db.get("u:987654") == b"a string"


def test_an_acl_refusal_is_permanent_and_never_names_the_key(redis_url: str, db: redis.Redis) -> None:
    """A user the ACL keeps from the keys gets NOPERM (whose message names the key): PermanentError, no value."""
    name = f"erasure-test-{uuid.uuid4().hex[:12]}"  # a user of its own, deleted afterwards
    db.acl_setuser(name, enabled=True, passwords=["+pw"], commands=["+@all"], keys=["other:*"])
    db.set("s:987654", "x")
    try:
        url = redis_url.replace("redis://", f"redis://{name}:pw@")
        with connector(url, keys=["s:{user_id}"]) as c:
            with pytest.raises(PermanentError, match=r"keys\[0\] 's:\{user_id\}'\): NOPERM") as caught:
                c.erase(user("987654"))
    finally:
        db.acl_deluser(name)
    assert "987654" not in str(caught.value)
    assert db.exists("s:987654") == 1


def test_the_match_pattern_alone_finds_only_the_value(db: redis.Redis) -> None:
    """Without the connector's second check, the escaped MATCH of `[0-9]`, `4*` or `\\` finds itself alone."""
    values = ["4*", "*", "[0-9]", "4?", "4\\", "\\*", "[^4]", "4", "42", "7", "4\\\\"]
    db.mset({f"k:{v}:data": "x" for v in values})
    for value in values:
        found = list(db.scan_iter(match=glob_escaped(f"k:{value}:") + "*", count=1000))
        assert found == [f"k:{value}:data".encode()], value


def test_each_removal_is_journaled_before_it_is_made(redis_url: str, db: redis.Redis) -> None:
    """With a journal, each step's count once its removal is answered is told while what it removes is still
    there: the exact keys, then the scanned keys, then the members; a subject with nothing tells nothing."""
    db.mset({"session:4": "a", "cache:4:a": "1", "cache:4:b": "2", "session:42": "n", "cache:42:a": "n"})
    db.hset("profiles", mapping={"4": "me", "42": "n"})
    told: list[tuple[str, list[int], int, int, bool]] = []

    def journal(step: str, items: list[int]) -> None:
        told.append((step, items, int(db.exists("session:4")), len(list(db.scan_iter("cache:4:*"))),
                     bool(db.hexists("profiles", "4"))))

    with connector(redis_url, keys=["session:{user_id}"], scan=["cache:{user_id}:"],
                   hashes=[{"key": "profiles", "field": "{user_id}"}]) as c:
        done = c.erase_many([user("4"), user("5")], journal)
    assert [o.items_erased for o in done] == [4, 0]  # type: ignore[union-attr]
    assert told == [("keys", [1, 0], 1, 2, True), ("scan", [2, 0], 0, 2, True), ("members", [1, 0], 0, 0, True)]
    assert db.exists("session:42", "cache:42:a") == 2 and db.hget("profiles", "42") == b"n"
