"""The http kind's config: a bad table is a one-line ConfigError at load naming the file, the system and
the key; secrets come from the environment when a call is made, never the file; no value can choose the host."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import EnvSecret, Subject
from connectors.errors import ConfigError, PermanentError
from connectors.http.config import Header, HttpConfig
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


def test_the_signing_secret_is_required_and_read_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret_env stops the load; an unset variable does not (it is read when signing), and reading it
    then fails naming the variable."""
    raw = service_raw(BASE)
    del raw["secret_env"]
    with pytest.raises(ConfigError, match="secret_env: missing"):
        system_config(HttpConfig, raw)
    monkeypatch.delenv(HTTP_SECRET_ENV)
    config = system_config(HttpConfig, service_raw(BASE))
    assert config.secret == EnvSecret(HTTP_SECRET_ENV)
    with pytest.raises(PermanentError, match=f"^the environment variable {HTTP_SECRET_ENV} is not set$"):
        config.signing_secret()
    monkeypatch.setenv(HTTP_SECRET_ENV, HTTP_SECRET)
    assert config.signing_secret() == HTTP_SECRET.encode()


def test_a_token_header_is_read_from_the_environment_when_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header `{ env = NAME }` loads with the variable unset and holds the variable's value (with its
    prefix) when sent; unset then, it fails naming the variable."""
    monkeypatch.delenv(HTTP_TOKEN_ENV)
    config = system_config(HttpConfig, service_raw(BASE))
    assert config.headers == (Header("Authorization", "Bearer ", EnvSecret(HTTP_TOKEN_ENV)),
                              Header("Accept", "application/json"))
    with pytest.raises(PermanentError, match=f"^the environment variable {HTTP_TOKEN_ENV} is not set$"):
        config.headers[0].value()
    monkeypatch.setenv(HTTP_TOKEN_ENV, "tok-2")
    assert [h.value() for h in config.headers] == ["Bearer tok-2", "application/json"]


def test_a_token_holding_a_line_break_fails_when_sent_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable whose value would split the header is refused when sending, naming the variable, not the value."""
    monkeypatch.setenv(HTTP_TOKEN_ENV, "tok-1\r\nX-Admin: yes")
    config = system_config(HttpConfig, service_raw(BASE))
    with pytest.raises(PermanentError, match=f"environment variable {HTTP_TOKEN_ENV} must hold printable") as raised:
        config.headers[0].value()
    assert "tok-1" not in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("name", ["billing_secret", "BILLING-SECRET", "1SECRET", "$BILLING_SECRET"])
def test_a_variable_name_that_is_no_environment_variable_is_refused_at_load(name: str) -> None:
    """secret_env and a header's env must name an environment variable (A-Z, 0-9, _), checked at load."""
    assert "secret_env: names an environment variable" in refused(secret_env=name)
    header = {"Authorization": {"env": name}}
    assert "headers.Authorization: env: names an environment variable" in refused(headers=header)


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
    """The config's repr (in a traceback, a debugger) names the variables, never the signing secret or the token."""
    shown = repr(system_config(HttpConfig, service_raw(BASE)))
    assert HTTP_SECRET not in shown and "tok-1" not in shown
    assert HTTP_SECRET_ENV in shown and HTTP_TOKEN_ENV in shown


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
