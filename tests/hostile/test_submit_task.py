"""The `erasure.submit` task with generated arguments, as any Celery or AMQP client might send them: it
never raises out of the worker; a malformed one is logged with a reason that names no value, records
nothing and enqueues nothing; a good one is recorded once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.helpers import Examples, ListDispatch, free_texts, json_values, scopes, subject_shapes
from worker.queue import dispatch, tasks
from worker.runtime import Runtime
from worker.store.models import Request, SystemTask

FIELDS = ("subject", "requested_by", "idempotency_key", "scope")
Logs = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def installed(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """The hostile runtime as the process's runtime, the one the tasks use."""
    monkeypatch.setattr(dispatch, "_current", runtime)
    yield runtime


def recorded(rt: Runtime) -> tuple[int, int]:
    """How many requests and system rows the store holds."""
    with rt.transaction() as session:
        return (session.scalar(select(func.count()).select_from(Request)) or 0,
                session.scalar(select(func.count()).select_from(SystemTask)) or 0)


def texts_in(value: Any) -> list[str]:
    """Every string in a generated value that a log line must not repeat: 5 characters or more, not a
    plain word, and no key that is a plain name (those are named on purpose: "unknown field x_1")."""
    if isinstance(value, str):
        return [value] if len(value) >= 5 and not value.replace("_", "").isalpha() else []
    if isinstance(value, dict):
        keys = [k for k in value if not (isinstance(k, str) and k.isidentifier() and len(k) <= 40)]
        return [*texts_in(keys), *texts_in(list(value.values()))]
    if isinstance(value, list | tuple):
        return [t for v in value for t in texts_in(v)]
    return []


def kwargs_shapes() -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments: the four fields, each maybe missing or of any shape, and maybe unknown ones."""
    known = st.fixed_dictionaries({}, optional={"subject": subject_shapes(), "requested_by": free_texts(),
                                                "idempotency_key": free_texts(), "scope": scopes()})
    unknown = st.dictionaries(st.text(min_size=1, max_size=12) | st.sampled_from(("Subject", "args", "kwargs")),
                              json_values(2), max_size=2)
    return st.tuples(known, unknown | st.just({})).map(lambda pair: {**pair[1], **pair[0]})


def test_the_task_never_raises_and_drops_bad_input_recording_nothing(
    installed: Runtime, examples: Examples, json_logs: Logs,
) -> None:
    """Any positional and keyword arguments: the task returns; a dropped message is logged (intake.dropped,
    a reason repeating no value) and records and enqueues nothing; an accepted one records one request."""
    sent = installed.dispatch
    assert isinstance(sent, ListDispatch)

    @examples(150 if installed.config.store_url.startswith("sqlite") else 40)
    @given(args=st.lists(json_values(3), max_size=2), kwargs=kwargs_shapes())
    @example(args=[], kwargs={"subject": {"email": "\ud800@x"}})
    @example(args=[{"subject": {"user_id": "42"}}], kwargs={})
    @example(args=[], kwargs={"subject": {"user_id": "42"}, "Subject": {"user_id": "4242424242"}})
    @example(args=[], kwargs={"subject": {"handle": "../4242424242"}})
    @example(args=[], kwargs={"subject": {"user_id": "4242424242"}, "requested_by": "ops\n4242424242"})
    def check(args: list[Any], kwargs: dict[str, Any]) -> None:
        json_logs()
        before = recorded(installed)
        sent.sent.clear()
        assert tasks.submit(*args, **kwargs) is None
        events = [e for e in json_logs() if e.get("event") in ("intake.dropped", "intake.accepted")]
        assert len(events) == 1, events
        if events[0]["event"] == "intake.dropped":
            assert recorded(installed) == before
            assert sent.sent == []
            assert [t for t in texts_in([args, kwargs]) if t in events[0]["reason"]] == []
            return
        assert not args and set(kwargs) <= set(FIELDS)
        request_id = events[0]["request_id"]
        with installed.transaction() as session:
            assert session.get(Request, request_id) is not None
        if not events[0]["duplicate"]:
            assert recorded(installed)[0] == before[0] + 1
            assert sent.sent == [("start", request_id)]

    check()
