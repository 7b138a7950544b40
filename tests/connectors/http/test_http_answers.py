"""What the http connector does with each answer of a fake service over a real socket: retries with
backoff (honouring Retry-After), failures at once, asynchronous jobs, and the verify GET; and that no
error or evidence ever holds an identifier's value."""

from __future__ import annotations

import json
import time

import pytest

from connectors.errors import ConnectorError, PermanentError, TransientError
from tests.helpers import FakeService, Reply, http_connector, service_raw, user

VALUE = "zq-distinct-4711"  # searched for in every error and piece of evidence


def test_a_500_is_sent_again_with_the_same_key(service: FakeService) -> None:
    """A 500 then a 200: erased, both statuses in the evidence, one idempotency key, each send signed."""
    service.records = {"7": ["a"]}
    service.script.append(Reply(500))
    with http_connector(service_raw(service.url)) as connector:
        outcome = connector.erase(user("7"))
    assert outcome.items_erased == 1
    assert outcome.evidence["calls"][0]["statuses"] == [500, 200]
    assert len({c.key for c in service.calls}) == 1 and all(c.signed for c in service.calls)


def test_a_429_waits_as_long_as_retry_after_says(service: FakeService) -> None:
    """A 429 with Retry-After: 1 is sent again no sooner than a second later."""
    service.records = {"7": ["a"]}
    service.script.append(Reply(429, {"Retry-After": "1"}))
    began = time.monotonic()
    with http_connector(service_raw(service.url)) as connector:
        assert connector.erase(user("7")).items_erased == 1
    assert time.monotonic() - began >= 1.0


def test_a_long_retry_after_ends_the_attempt(service: FakeService) -> None:
    """A 429 asking for an hour is a TransientError at once: the worker's backoff waits, not the worker."""
    service.script.append(Reply(429, {"Retry-After": "3600"}))
    with http_connector(service_raw(service.url)) as connector, pytest.raises(TransientError, match="429.*3600 s"):
        connector.erase(user("7"))
    assert len(service.calls) == 1


def test_a_service_that_keeps_failing_is_transient(service: FakeService) -> None:
    """Three 503s in a row: a TransientError naming the status, for the worker to retry later."""
    service.script += [Reply(503)] * 3
    with http_connector(service_raw(service.url)) as connector, pytest.raises(TransientError, match="503"):
        connector.erase(user("7"))
    assert len(service.calls) == 3


def test_a_slow_service_times_out_and_is_transient(service: FakeService) -> None:
    """A service slower than timeout_seconds on every try: a TransientError saying it timed out."""
    service.script += [Reply(delay=1.0)] * 3
    raw = service_raw(service.url, timeout_seconds=0.2)
    with http_connector(raw) as connector, pytest.raises(TransientError, match="timed out"):
        connector.erase(user("7"))


def test_a_slow_answer_is_tried_again(service: FakeService) -> None:
    """One time-out, then an answer: erased."""
    service.records = {"7": ["a"]}
    service.script.append(Reply(delay=1.0))
    with http_connector(service_raw(service.url, timeout_seconds=0.3)) as connector:
        assert connector.erase(user("7")).items_erased == 1


@pytest.mark.parametrize("status", [400, 401, 403, 409, 422, 302])
def test_another_4xx_or_a_redirect_fails_at_once(service: FakeService, status: int) -> None:
    """A 4xx other than 404 and 429, or a redirect (never followed), is a PermanentError naming the status."""
    service.script.append(Reply(status, {"Location": "http://elsewhere.invalid/"}))
    with http_connector(service_raw(service.url)) as connector, pytest.raises(PermanentError, match=str(status)):
        connector.erase(user("7"))
    assert len(service.calls) == 1


def test_a_202_job_is_polled_until_it_answers_200(service: FakeService) -> None:
    """A 202 with a Location: the job is polled (signed) through its 202s until its 200 and its count."""
    service.records = {"7": ["a", "b"]}
    service.job_polls = 2
    with http_connector(service_raw(service.url, "/async/users/{user_id}")) as connector:
        outcome = connector.erase(user("7"))
    assert outcome.items_erased == 2
    assert outcome.evidence["calls"] == [{"statuses": [202], "job": {"polls": 3, "status": 200},
                                          "result": "erased", "items": 2}]
    assert [c.path for c in service.calls[1:]] == ["/jobs/1"] * 3 and all(c.signed for c in service.calls)


def test_a_job_that_ends_in_404_is_not_found(service: FakeService) -> None:
    """A job for a subject the service never held ends with 404: not found, nothing erased."""
    with http_connector(service_raw(service.url, "/async/users/{user_id}")) as connector:
        outcome = connector.erase(user("7"))
    assert outcome.items_erased == 0 and outcome.evidence["calls"][0]["result"] == "not_found"


def test_a_job_past_async_timeout_fails(service: FakeService) -> None:
    """A job still running after async_timeout_seconds fails the system, naming the timeout."""
    service.records = {"7": ["a"]}
    service.job_polls = 10_000
    raw = service_raw(service.url, "/async/users/{user_id}", async_timeout_seconds=1)
    began = time.monotonic()
    with http_connector(raw) as connector, pytest.raises(PermanentError, match="within 1 s"):
        connector.erase(user("7"))
    assert 1.0 <= time.monotonic() - began < 5


def test_a_job_on_another_host_is_not_followed(service: FakeService) -> None:
    """A 202 whose Location names another host is refused; nothing is sent there."""
    service.script.append(Reply(202, {"Location": "http://127.0.0.2:1/jobs/1"}))
    with http_connector(service_raw(service.url)) as connector, pytest.raises(PermanentError, match="another host"):
        connector.erase(user("7"))
    assert len(service.calls) == 1


def test_verify_counts_the_records_left(service: FakeService) -> None:
    """verify_url answering a JSON list: its length before the erase, 0 after (an empty list)."""
    service.records = {"7": ["a", "b"], "70": ["c"]}
    raw = service_raw(service.url, verify_url=f"{service.url}/users/{{user_id}}/records")
    with http_connector(raw) as connector:
        before = connector.verify(user("7"))
        connector.erase(user("7"))
        assert (before, connector.verify(user("7")), connector.verify(user("70"))) == (2, 0, 1)
    assert all(c.signed and c.key is None for c in service.calls if c.method == "GET")


def test_verify_takes_a_404_for_gone(service: FakeService) -> None:
    """verify_url answering an object while the user is there counts 1, and 404 once erased counts 0."""
    service.records = {"7": ["a", "b"]}
    with http_connector(service_raw(service.url, verify_url=f"{service.url}/users/{{user_id}}")) as connector:
        before = connector.verify(user("7"))
        connector.erase(user("7"))
        assert (before, connector.verify(user("7"))) == (1, 0)


def test_without_verify_url_verify_takes_the_service_at_its_word(service: FakeService) -> None:
    """With no verify_url, verify makes no call and reports nothing left."""
    service.records = {"7": ["a"]}
    with http_connector(service_raw(service.url)) as connector:
        assert connector.verify(user("7")) == 0
    assert service.calls == []


@pytest.mark.parametrize("script", [
    [Reply(400)], [Reply(500)] * 3, [Reply(delay=1.0)] * 3, [Reply(429, {"Retry-After": "99"})],
    [Reply(202, {"Location": "https://other.invalid/x"})],
])
def test_no_error_holds_the_value(service: FakeService, script: list[Reply]) -> None:
    """Whatever goes wrong, the error names the URL's template and the status, never the value."""
    service.script += script
    with http_connector(service_raw(service.url, timeout_seconds=0.2)) as connector:
        with pytest.raises(ConnectorError) as caught:
            connector.erase(user(VALUE))
    assert "/users/{user_id}" in str(caught.value) and VALUE not in str(caught.value)


def test_no_evidence_holds_the_value(service: FakeService) -> None:
    """The evidence of a retried, a sync and an async erase keeps templates and statuses, never the value."""
    service.records = {VALUE: ["a"]}
    service.script.append(Reply(500))
    outcomes = []
    with http_connector(service_raw(service.url)) as connector:
        outcomes.append(connector.erase(user(VALUE)))
    service.records = {VALUE: ["a"]}
    with http_connector(service_raw(service.url, "/async/users/{user_id}")) as connector:
        outcomes.append(connector.erase(user(VALUE)))
    assert [o.items_erased for o in outcomes] == [1, 1]
    assert all(VALUE not in json.dumps(o.evidence) for o in outcomes)
