"""The redis kind's config: what a system table may say, refused at load in one line naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import EnvSecret, Subject
from connectors.errors import ConfigError, PermanentError
from connectors.redis.config import RedisConfig
from tests.helpers import system_config

TYPES = frozenset({"user_id", "email", "handle"})
URL = "redis://127.0.0.1:6379/11"


def config(**keys: Any) -> RedisConfig:
    """A redis system table with the given keys (a url and an exact key unless told otherwise: None removes
    a key), parsed as start-up does."""
    raw = {"name": "cache", "kind": "redis", "url": URL, "keys": ["s:{user_id}"]} | keys
    return system_config(RedisConfig, {k: v for k, v in raw.items() if v is not None}, TYPES)


@pytest.mark.parametrize("prefix", ["cache:{user_id}", "cache:{user_id}x", "cache:{user_id}7:", "{user_id}"])
def test_a_scan_prefix_without_a_separator_after_the_value_is_refused(prefix: str) -> None:
    """`cache:{user_id}` would take user 42's keys for user 4: refused, naming the key."""
    with pytest.raises(ConfigError, match=r"^erasure.toml: system 'cache': scan\[0\]: .*separator"):
        config(scan=[prefix])


@pytest.mark.parametrize("glob", ["*", "?", "[", "]", "\\"])
def test_a_scan_prefix_with_a_glob_character_is_refused(glob: str) -> None:
    """A glob character in the literal part of a prefix is refused, never sent to SCAN as a pattern."""
    with pytest.raises(ConfigError, match=r"scan\[0\]: .*glob character"):
        config(scan=[f"cache{glob}:{{user_id}}:"])


def test_two_placeholders_side_by_side_in_a_prefix_are_refused() -> None:
    """`{tenant}{user_id}:` cannot tell where one value ends: refused."""
    with pytest.raises(ConfigError, match=r"scan\[0\]: .*followed by a separator"):
        config(scan=["c:{handle}{user_id}:"])


def test_a_prefix_naming_no_identifier_is_refused() -> None:
    """A prefix without a placeholder would match every subject."""
    with pytest.raises(ConfigError, match=r"scan\[0\]: .*names no identifier"):
        config(scan=["cache:"])


def test_a_pair_naming_no_identifier_is_refused() -> None:
    """A hash field removed from a fixed key for every subject alike is refused."""
    with pytest.raises(ConfigError, match=r"system 'cache' hashes\[0\]: field: neither key nor field"):
        config(hashes=[{"key": "profiles", "field": "email"}])


def test_a_pair_with_an_unknown_key_is_refused() -> None:
    """A set written with `field` in place of `member` is a typo, refused."""
    with pytest.raises(ConfigError, match=r"sets\[0\]: field: unknown key"):
        config(sets=[{"key": "online", "field": "{user_id}"}])


def test_a_pair_may_have_a_literal_key_or_a_literal_member() -> None:
    """`online` holds everyone's ids; `user:{user_id}` holds a field named `email`: both are accepted."""
    parsed = config(keys=None, sets=[{"key": "online", "member": "{user_id}"}],
                    hashes=[{"key": "user:{user_id}", "field": "email"}])
    assert parsed.sets[0].render(Subject({"user_id": ("4",)})) == [("online", "4")]
    assert parsed.hashes[0].render(Subject({"user_id": ("4",)})) == [("user:4", "email")]
    assert parsed.identifier_types == {"user_id"}


def test_a_pair_renders_one_value_in_both_of_its_templates() -> None:
    """Key and member naming the same type take the same value: `h:4`/`4` and `h:7`/`7`, never `h:4`/`7`."""
    parsed = config(hashes=[{"key": "h:{user_id}", "field": "{user_id}"}])
    assert parsed.hashes[0].render(Subject({"user_id": ("4", "7")})) == [("h:4", "4"), ("h:7", "7")]


def test_nothing_to_erase_is_refused() -> None:
    """A system with no keys, pairs or prefixes would erase nothing: refused."""
    with pytest.raises(ConfigError, match="nothing to erase"):
        config(keys=None)


def test_url_and_url_env_are_exclusive() -> None:
    """Exactly one of `url` and `url_env` is given."""
    with pytest.raises(ConfigError, match="url: give either url or url_env"):
        config(url_env="CACHE_REDIS_URL")
    with pytest.raises(ConfigError, match="url: give either url or url_env"):
        config(url=None)


def test_url_env_names_the_variable_read_when_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    """`url_env` loads with the variable unset (only erasing reads it); the URL with its password is read
    then, and never shows in the config's repr."""
    monkeypatch.delenv("CACHE_REDIS_URL", raising=False)
    parsed = config(url=None, url_env="CACHE_REDIS_URL")
    assert parsed.url == EnvSecret("CACHE_REDIS_URL")
    monkeypatch.setenv("CACHE_REDIS_URL", "redis://:hunter2@cache:6379/3")
    assert parsed.connection_url() == "redis://:hunter2@cache:6379/3"
    assert "hunter2" not in repr(parsed)


def test_a_bad_url_is_refused_without_repeating_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A URL that is no Redis URL is refused (at load when written, when connecting when in the variable),
    and the message never shows it (it may hold a password)."""
    with pytest.raises(ConfigError, match="url: must be a redis://") as refused:
        config(url="http://:hunter2@cache:6379/3")
    monkeypatch.setenv("CACHE_REDIS_URL", "http://:hunter2@cache:6379/3")
    parsed = config(url=None, url_env="CACHE_REDIS_URL")
    with pytest.raises(PermanentError, match="CACHE_REDIS_URL holds no redis://") as failed:
        parsed.connection_url()
    assert "hunter2" not in str(refused.value) + str(failed.value)


@pytest.mark.parametrize("name", ["cache_url", "CACHE-URL", "redis://:hunter2@cache:6379/0"])
def test_url_env_must_name_an_environment_variable(name: str) -> None:
    """A url_env that is no variable's name (a URL written there by mistake) is refused at load, never repeated."""
    with pytest.raises(ConfigError, match="url_env: names an environment variable") as refused:
        config(url=None, url_env=name)
    assert name not in str(refused.value) and "hunter2" not in str(refused.value)


@pytest.mark.parametrize(("key", "value"), [("scan_count", 0), ("scan_count", 200_000), ("timeout", 0),
                                            ("timeout", True)])
def test_out_of_range_numbers_are_refused(key: str, value: Any) -> None:
    """`scan_count` is 1-100000 and `timeout` a number above 0."""
    with pytest.raises(ConfigError, match=rf"system 'cache': {key}: "):
        config(**{key: value})


def test_a_value_holding_the_separator_after_its_placeholder_is_refused_at_intake() -> None:
    """A handle `4:x` would render `cache:4:x:`, a key under handle 4's prefix: the request is refused."""
    parsed = config(scan=["cache:{handle}:"])
    assert parsed.problem_with(Subject({"handle": ("4",), "user_id": ("4:x",)})) is None
    problem = parsed.problem_with(Subject({"handle": ("4:x",)}))
    assert problem is not None and "':'" in problem and "4:x" not in problem
    assert parsed.problem_with(Subject({"handle": ("",)})) is not None
