"""The http kind's config: a bad table is a one-line ConfigError at load naming the file, the system and
the key; secrets come from the environment, never the file; no value can choose the host."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import Subject
from connectors.errors import ConfigError
from connectors.http.config import HttpConfig
from tests.helpers import HTTP_SECRET, HTTP_SECRET_ENV, HTTP_TOKEN_ENV, service_raw, system_config

BASE = "https://billing.internal"


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing secret and the token, in the environment the config names."""
    monkeypatch.setenv(HTTP_SECRET_ENV, HTTP_SECRET)
    monkeypatch.setenv(HTTP_TOKEN_ENV, "tok-1")


def refused(**overrides: Any) -> str:
    """The ConfigError's text for the billing table with these keys changed."""
    with pytest.raises(ConfigError) as caught:
        system_config(HttpConfig, service_raw(BASE) | overrides)
    text = str(caught.value)
    assert text.startswith("erasure.toml: system 'billing'") and "\n" not in text
    return text


@pytest.mark.parametrize("url", [
    "https://{user_id}.billing.internal/x", "https://billing{user_id}/x", "https://billing.internal:{user_id}/x",
    "https://billing.internal{user_id}", "{user_id}", "https://billing.internal/x#{user_id}",
])
def test_a_placeholder_never_reaches_the_host(url: str) -> None:
    """A placeholder in the scheme, host or port (or a fragment) is refused at load, naming `url`."""
    assert ": url: " in refused(url=url)


@pytest.mark.parametrize("url", ["ftp://billing.internal/{user_id}", "https://u:p@billing.internal/{user_id}",
                                 "billing.internal/{user_id}"])
def test_only_plain_http_and_https_urls(url: str) -> None:
    """Another scheme, a user:password@ or no scheme at all is refused."""
    assert ": url: " in refused(url=url)


def test_a_query_placeholder_is_accepted() -> None:
    """A placeholder after '?' is fine: the host ends before it."""
    config = system_config(HttpConfig, service_raw(BASE, "?user={user_id}"))
    assert config.url is not None and config.url.render({"user_id": "a&b=c"}) == f"{BASE}?user=a%26b%3Dc"


def test_the_signing_secret_is_required_and_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret_env, or a variable that is unset, stops the load, naming the variable."""
    raw = service_raw(BASE)
    del raw["secret_env"]
    with pytest.raises(ConfigError, match="secret_env: missing"):
        system_config(HttpConfig, raw)
    monkeypatch.delenv(HTTP_SECRET_ENV)
    assert f"secret_env: the environment variable {HTTP_SECRET_ENV} is not set" in refused()


def test_a_token_header_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header `{ env = NAME }` holds the variable's value (with its prefix); unset, the load stops naming it."""
    config = system_config(HttpConfig, service_raw(BASE))
    assert dict(config.headers) == {"Authorization": "Bearer tok-1", "Accept": "application/json"}
    monkeypatch.delenv(HTTP_TOKEN_ENV)
    assert f"headers.Authorization: env: the environment variable {HTTP_TOKEN_ENV} is not set" in refused()


@pytest.mark.parametrize("name", ["Authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "Proxy-Authorization"])
def test_a_secret_header_is_never_written_in_the_file(name: str) -> None:
    """A literal value for a header that may hold a secret is refused, without repeating the value."""
    text = refused(headers={name: "hunter2-literal"})
    assert f"headers.{name}" in text and "hunter2-literal" not in text


@pytest.mark.parametrize("name", ["Idempotency-Key", "Erasure-Signature", "Host", "Content-Type", "Bad Name"])
def test_the_connector_s_own_headers_cannot_be_set(name: str) -> None:
    """Headers the connector sets itself, and names that are no header names, are refused."""
    assert f"headers.{name}" in refused(headers={name: "x"})


def test_secrets_stay_out_of_the_config_s_repr() -> None:
    """The config's repr (in a traceback, a debugger) shows neither the signing secret nor the token."""
    shown = repr(system_config(HttpConfig, service_raw(BASE)))
    assert HTTP_SECRET not in shown and "tok-1" not in shown


@pytest.mark.parametrize("body, problem", [
    ({"user": "id-{user_id}"}, "whole string value"), ({"{user_id}": "x"}, "key cannot hold"),
    ({"user": "{phone}"}, "unknown identifier type"), ({"user": "{user_id}", "at": [1.5, float("nan")]}, "float"),
    ("{user_id}", "table or an array"),
])
def test_a_body_placeholder_is_a_whole_string_of_a_known_type(body: Any, problem: str) -> None:
    """A placeholder spliced into text or a key, an unknown type, or what JSON cannot carry is refused."""
    assert problem in refused(body=body)


def test_a_call_must_name_an_identifier() -> None:
    """A URL and body naming no identifier would send every subject the same call: refused."""
    assert "name no identifier" in refused(url=f"{BASE}/erase-everyone", body={"all": True})


def test_a_body_alone_may_name_the_identifier() -> None:
    """A fixed URL with the identifier in the body is fine, and the call is made for that type."""
    config = system_config(HttpConfig, service_raw(BASE, "/erasures", method="post", body={"u": "{user_id}"}))
    assert (config.method, config.call_fields) == ("POST", frozenset({"user_id"}))


def test_verify_url_must_name_an_identifier() -> None:
    """A verify URL naming no identifier cannot tell one subject's data from another's."""
    assert "verify_url: " in refused(verify_url=f"{BASE}/users")


@pytest.mark.parametrize("overrides, key", [
    ({"method": "GET"}, "method"), ({"timeout_seconds": 0}, "timeout_seconds"),
    ({"async_timeout_seconds": True}, "async_timeout_seconds"), ({"urls": "x"}, "urls"),
    ({"url": f"{BASE}/{{nobody}}"}, "url"),
])
def test_other_bad_keys_are_refused(overrides: dict[str, Any], key: str) -> None:
    """A method that erases nothing, a non-positive time, an unknown key or type: refused, naming the key."""
    assert f": {key}: " in refused(**overrides)


def test_a_dot_value_is_refused_for_a_url() -> None:
    """'.' and '..' would be read as path steps: a subject with one is refused at intake."""
    config = system_config(HttpConfig, service_raw(BASE))
    assert config.problem_with(Subject({"user_id": ("..",)})) is not None
    assert config.problem_with(Subject({"user_id": ("...",)})) is None
