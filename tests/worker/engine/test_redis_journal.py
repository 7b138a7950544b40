"""The journal for redis systems: before each removal (the exact keys, the scanned keys, the members) the
subject's count of that step is noted in the store, so an attempt that dies after removing and before the
store records its outcome loses no count; one that dies before removing counts them once, when it removes."""

from __future__ import annotations

import pytest
import redis

from tests.helpers import REDIS_CLAIM, MakeRuntime, after_a_death, system_table
from worker.runtime import Runtime


def cache(make_runtime: MakeRuntime, redis_url: str) -> Runtime:
    """User 42's session key, two cache keys under its prefix and its profile field; user 420's alike."""
    db = redis.Redis.from_url(redis_url)
    db.mset({"session:42": "a", "cache:42:x": "1", "cache:42:y": "2", "session:420": "n", "cache:420:x": "n"})
    db.hset("profiles", mapping={"42": "me", "420": "n"})
    db.close()
    return make_runtime(system_table("cache", "redis", url=redis_url, keys=["session:{user_id}"],
                                     scan=["cache:{user_id}:"], hashes=[{"key": "profiles", "field": "{user_id}"}]))


def left(redis_url: str) -> tuple[list[bytes], list[bytes]]:
    """The keys left (the test's claim aside) and the profile fields left."""
    db = redis.Redis.from_url(redis_url)
    try:
        return sorted(k for k in db.scan_iter() if k != REDIS_CLAIM.encode()), sorted(db.hkeys("profiles"))
    finally:
        db.close()


@pytest.mark.parametrize("dies", ["after the change", "before the change"])
def test_items_removed_or_journaled_by_an_attempt_that_died_are_counted_once(make_runtime: MakeRuntime,
                                                                            redis_url: str, dies: str) -> None:
    """Killed after its removals, the first attempt's four items (a key, two scanned keys, a field) are
    counted by the second from the journal, step by step; killed after journaling its exact key and before
    removing it, the second removes all four and counts four, not five."""
    system, evidence = after_a_death(cache(make_runtime, redis_url), "cache", {"user_id": "42"}, dies)

    assert left(redis_url) == ([b"cache:420:x", b"profiles", b"session:420"], [b"420"])
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, 4)
    earlier = evidence.get("by_an_earlier_attempt")
    assert earlier == ({"keys": 1, "members": 1, "scan": 2} if dies == "after the change" else None)
