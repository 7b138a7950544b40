"""A runtime played without a broker, and what tests read back from it."""


from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from worker.engine import fanout, intake, parts, passes
from worker.errors import TransientError
from worker.integrations import mlflow_lineage
from worker.runtime import Runtime
from worker.store.models import Request
from worker.surfaces import views

MakeRuntime = Callable[..., Runtime]  # the make_runtime fixture: (systems, store_url=None, **write_config's keys)


class ListDispatch:
    """A dispatcher that keeps messages in a list instead of sending them to a broker."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def start(self, request_id: str) -> None:
        """Keep an erasure.start message."""
        self.sent.append(("start", request_id))

    def erase(self, request_id: str, system: str, kind: str, countdown: float | None = None,
              also: Sequence[str] = ()) -> None:
        """Keep an erasure.erase_system message."""
        self.sent.append(("erase", request_id, system, kind, countdown, tuple(also)))

    def tag(self, model: str, version: str) -> None:
        """Keep an erasure.tag_mlflow message."""
        self.sent.append(("tag", model, version))

    def part(self, part_id: int, countdown: float | None = None) -> None:
        """Keep an erasure.snapshot_part message."""
        self.sent.append(("part", part_id, countdown))


def drain(rt: Runtime, limit: int = 500) -> int:
    """Run every kept message (and those they send) the way a worker would; returns how many."""
    dispatch = rt.dispatch
    assert isinstance(dispatch, ListDispatch)
    done = 0
    while dispatch.sent:
        message = dispatch.sent.pop(0)
        if message[0] == "start":
            fanout.start(rt, message[1])
        elif message[0] == "part":
            parts.run_part(rt, message[1])
        elif message[0] == "tag":  # Celery's retries, played at once
            attempt = 1
            while mlflow_lineage.tag(rt, message[1], message[2], attempt) is not None:
                attempt += 1
        else:
            passes.erase_system(rt, message[1], message[2], message[5] if len(message) > 5 else ())
        done += 1
        assert done < limit, "messages keep coming"
    return done


def at_once(*calls: Callable[[], Any]) -> list[BaseException]:
    """Run the calls in threads of their own, released together; what any of them raised."""
    barrier, problems = threading.Barrier(len(calls)), list[BaseException]()

    def run(call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - the caller asserts there were none
            problems.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return problems


def erased(rt: Runtime, user_id: str) -> str:
    """Submit and play a request for one user id; returns its id."""
    request_id = intake.submit(rt, {"user_id": user_id}).request_id
    drain(rt)
    return request_id


def stored(rt: Runtime, request_id: str) -> Request:
    """The request row as the store holds it, with its system rows loaded."""
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        _ = request.systems
        return request


class Recorder:
    """Stands in for a module's logger, keeping each event with its fields."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        """Keep one event."""
        self.events.append((event, fields))

    warning = error = info

    def named(self, event: str) -> list[dict[str, Any]]:
        """The fields of every kept event of that name."""
        return [fields for name, fields in self.events if name == event]


def json_events(text: str) -> list[dict[str, Any]]:
    """The JSON events among a log's lines (the lines that are not JSON left out)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def sign_in(client: Any, token: str, next_path: str = "/") -> Any:
    """Post the status page's sign-in form as a browser would."""
    return client.post("/sign-in", data={"token": token, "next": next_path})


class Killed(Exception):  # noqa: N818 - not an error: where a test stops an attempt
    """Raised by a test's journal after noting, before the connector's change (its commit, its call)."""


def first_attempt_dies(connector: Any, where: str) -> None:
    """Make the connector's first `erase_many` die where `where` says: "after the change" (done, then a
    TransientError before the store records it) or "before the change" (journaled, then stopped before the
    change: a commit rolled back, a call never made). Later attempts run as they are."""
    erase_many, attempts = connector.erase_many, []

    def dying(subjects: Any, journal: Any = None) -> Any:
        attempts.append(1)
        assert journal is not None
        if len(attempts) > 1:
            return erase_many(subjects, journal)

        def noted(key: str, rows: list[int]) -> None:
            journal(key, rows)
            if where == "before the change":
                raise Killed

        try:
            erase_many(subjects, noted)
        except Killed:
            pass
        raise TransientError(f"killed {where}")

    connector.erase_many = dying


def after_a_death(rt: Runtime, system: str, identifiers: dict[str, str], dies: str) -> tuple[dict[str, Any],
                                                                                            dict[str, Any]]:
    """A request submitted and drained whose first attempt at `system` died where `dies` says
    (first_attempt_dies): the system's row of its status, and its evidence there."""
    first_attempt_dies(rt.connector(system), dies)
    request_id = intake.submit(rt, identifiers).request_id
    drain(rt)
    return views.status(rt, request_id)["systems"][0], views.evidence(rt, request_id)[system]
