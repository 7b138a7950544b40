"""The http connector against a fake internal service over a real socket: what it erases, what it
sends (encoded values, signature, idempotency key, token), and what each answer means."""

from __future__ import annotations

import json
import time

import pytest

from connectors import context, signing
from connectors.errors import PermanentError
from tests.helpers import (
    HTTP_SECRET,
    HTTP_SECRET_ENV,
    HTTP_TOKEN_ENV,
    FakeService,
    Reply,
    http_connector,
    service_raw,
    user,
)


def test_a_delete_erases_the_user_and_reports_its_items(service: FakeService) -> None:
    """A 2xx is erased, with the `items_erased` of its JSON body; the evidence holds the template and statuses."""
    service.records = {"7": ["a", "b", "c"]}
    with http_connector(service_raw(service.url)) as connector:
        outcome = connector.erase(user("7"))
    assert outcome.items_erased == 3
    assert service.records == {}
    assert outcome.evidence == {"method": "DELETE", "url": f"{service.url}/users/{{user_id}}",
                                "calls": [{"statuses": [200], "result": "erased", "items": 3}]}


def test_a_404_is_not_found_and_a_second_erase_finds_nothing(service: FakeService) -> None:
    """Erasing twice: the second call answers 404, so nothing is erased and the evidence says not found."""
    service.records = {"7": ["a"]}
    with http_connector(service_raw(service.url)) as connector:
        connector.erase(user("7"))
        again = connector.erase(user("7"))
    assert again.items_erased == 0
    assert again.evidence["calls"] == [{"statuses": [404], "result": "not_found", "items": 0}]


def test_a_2xx_without_a_count_is_one_item(service: FakeService) -> None:
    """A 2xx whose body holds no `items_erased` counts one item."""
    service.script.append(Reply(204))
    with http_connector(service_raw(service.url)) as connector:
        assert connector.erase(user("7")).items_erased == 1


def test_a_neighbour_whose_id_starts_the_same_is_kept(service: FakeService) -> None:
    """Erasing user 4 leaves user 42 and 40 alone."""
    service.records = {"4": ["x"], "42": ["y"], "40": ["z"]}
    with http_connector(service_raw(service.url)) as connector:
        connector.erase(user("4"))
    assert service.records == {"42": ["y"], "40": ["z"]}


@pytest.mark.parametrize("value", ["a/b?x=1#", "../a", "a%2Fb", "a b&c=d", "/"])
def test_a_value_is_percent_encoded_and_reaches_only_its_own_path(service: FakeService, value: str) -> None:
    """A value with '/', '?', '#', '%', '&' or '..' is encoded into one path segment: the exact user is
    erased and no other path is reached."""
    neighbours = {"a": ["1"], "a/b": ["2"], "b": ["3"], "": ["4"], "a b": ["5"]}
    service.records = {value: ["mine"], **neighbours}
    with http_connector(service_raw(service.url)) as connector:
        outcome = connector.erase(user(value))
    assert outcome.items_erased == 1
    assert service.records == neighbours
    assert [c.path.count("/") for c in service.calls] == [2]  # /users/ENCODED: one segment


def test_every_call_is_signed_and_a_replay_is_refused(service: FakeService) -> None:
    """The Erasure-Signature verifies with the shared secret; the same header later than the tolerance,
    or over another body, is refused by signing.verify."""
    service.records = {"7": ["a"]}
    with http_connector(service_raw(service.url, url=f"{service.url}/erasures", method="POST",
                                    body={"user_id": "{user_id}"})) as connector:
        connector.erase(user("7"))
    call = service.calls[0]
    header = call.headers[signing.HEADER.lower()]
    stamp = signing.verify(HTTP_SECRET.encode(), call.body, header)
    assert call.signed and abs(stamp - time.time()) < 60
    with pytest.raises(signing.SignatureError, match="replay"):
        signing.verify(HTTP_SECRET.encode(), call.body, header, now=stamp + signing.TOLERANCE_SECONDS + 1)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(HTTP_SECRET.encode(), call.body.replace(b"7", b"8"), header)


def test_the_token_header_comes_from_the_environment(service: FakeService) -> None:
    """The Authorization header is the environment's token with its prefix; the service checks it."""
    service.records = {"7": ["a"]}
    with http_connector(service_raw(service.url)) as connector:
        connector.erase(user("7"))
    assert service.calls[0].headers["authorization"].startswith("Bearer tok-")
    assert service.calls[0].headers["accept"] == "application/json"


@pytest.mark.parametrize("variable", [HTTP_SECRET_ENV, HTTP_TOKEN_ENV])
def test_an_unset_secret_fails_the_erase_before_any_call(
        service: FakeService, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """The connector loads without its signing secret or token; erase() and verify() then fail with a
    PermanentError naming the variable, and the service receives no call."""
    service.records = {"7": ["a"]}
    monkeypatch.delenv(variable)
    raw = service_raw(service.url, verify_url=f"{service.url}/users/{{user_id}}/records")
    with http_connector(raw) as connector:
        with pytest.raises(PermanentError, match=f"^the environment variable {variable} is not set$"):
            connector.erase(user("7"))
        with pytest.raises(PermanentError, match=variable):
            connector.verify(user("7"))
    assert service.calls == [] and service.records == {"7": ["a"]}


def test_the_idempotency_key_names_the_request_and_the_system(service: FakeService) -> None:
    """Inside the worker's request context the key is REQUEST_ID:SYSTEM."""
    service.records = {"7": ["a"]}
    with http_connector(service_raw(service.url)) as connector, context.request("req-0001"):
        connector.erase(user("7"))
    assert service.calls[0].key == "req-0001:billing"


def test_without_a_request_the_key_is_a_keyed_hash_of_the_subject(service: FakeService) -> None:
    """With no request id given, the key is stable for one subject, differs for another, and holds no value."""
    with http_connector(service_raw(service.url)) as connector:
        for subject in (user("7123"), user("7123"), user("8123")):
            connector.erase(subject)
    first, again, other = (c.key or "" for c in service.calls)
    assert first == again != other
    assert first.startswith("subject-") and first.endswith(":billing") and "7123" not in first


def test_several_values_make_several_calls_with_distinct_keys(service: FakeService) -> None:
    """A subject with two user ids makes two calls, keyed REQUEST_ID:SYSTEM:1 and :2, items added up."""
    service.records = {"1": ["a"], "2": ["b", "c"], "3": ["d"]}
    with http_connector(service_raw(service.url)) as connector, context.request("r"):
        outcome = connector.erase(user("1", "2"))
    assert outcome.items_erased == 3
    assert [c.key for c in service.calls] == ["r:billing:1", "r:billing:2"]
    assert service.records == {"3": ["d"]}


def test_a_json_body_carries_the_value_as_a_json_string(service: FakeService) -> None:
    """A body placeholder becomes the value as a JSON string, quotes and all, never spliced into the text."""
    value = 'x","admin":true,"y":"'
    service.records = {value: ["a"], "x": ["b"]}
    raw = service_raw(service.url, url=f"{service.url}/erasures", method="POST",
                      body={"user_id": "{user_id}", "reason": "gdpr", "tags": ["art17", 1]})
    with http_connector(raw) as connector:
        outcome = connector.erase(user(value))
    assert json.loads(service.calls[0].body) == {"user_id": value, "reason": "gdpr", "tags": ["art17", 1]}
    assert service.calls[0].headers["content-type"] == "application/json"
    assert outcome.items_erased == 1 and service.records == {"x": ["b"]}
    assert value not in json.dumps(outcome.evidence)
