"""The retraining signal: a flagged model version is announced by a signed POST to `[models]
notify_url`, over a real socket to a receiver that checks the signature; sent once when taken,
again with backoff when not (5xx, a redirect, a closed port, no secret), again when the flag names
more snapshots; each taken notice audited. A bad [models] table is refused at load."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors import signing
from tests.helpers import MakeRuntime, drain, system_table, write_config
from worker.config import load
from worker.engine import flags, intake, lineage
from worker.errors import ConfigError
from worker.integrations import notify
from worker.runtime import Runtime
from worker.store.models import AuditEvent, ModelFlag, utcnow

SECRET_ENV, SECRET = "ERASURE_TEST_NOTIFY_SECRET", "notify-secret"
OCT, NOV = "2026-10-01", "2026-11-01"


class Platform:
    """A training platform's endpoint: answers each POST with the next scripted status (then 200),
    and keeps every notice whose signature verifies (a bad one is answered 401)."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.notices: list[tuple[dict[str, Any], str]] = []  # body, Idempotency-Key
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    signing.verify(SECRET.encode(), body, self.headers.get(signing.HEADER))
                except signing.SignatureError:
                    status = 401
                else:
                    status = platform.script.pop(0) if platform.script else 200
                    if status == 200:
                        platform.notices.append((json.loads(body), self.headers["Idempotency-Key"]))
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/erasure"


@pytest.fixture
def platform() -> Iterator[Platform]:
    made = Platform()
    yield made
    made.server.shutdown()


@pytest.fixture
def flagged(make_runtime: MakeRuntime, tmp_path: Path, platform: Platform,
            monkeypatch: pytest.MonkeyPatch) -> tuple[Runtime, Path, str]:
    """recsys 7 trained on October, which held user 2; 2's request settled: one open flag."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    root = tmp_path / "events"
    (root / OCT).mkdir(parents=True)
    (root / OCT / "e.jsonl").write_text('{"user_id": 1}\n{"user_id": 2}\n')
    rt = make_runtime(system_table("events", "snapshot", location=str(root), format="jsonl",
                                   where={"user_id": "user_id"}),
                      top=f'[models]\nnotify_url = "{platform.url}"\nsecret_env = "{SECRET_ENV}"\n')
    lineage.add(rt, "recsys", "7", [f"events:{OCT}"], trained_at=utcnow() - timedelta(days=1))
    request_id = intake.submit(rt, {"user_id": "2"}).request_id
    drain(rt)
    return rt, root, request_id


def flag_row(rt: Runtime) -> ModelFlag:
    with rt.transaction() as session:
        flag = session.scalars(select(ModelFlag)).one()
        session.expunge(flag)
        return flag


def due_now(rt: Runtime) -> None:
    """Skip the backoff, as time passing would."""
    with rt.transaction() as session:
        session.execute(update(ModelFlag).values(notify_after=utcnow() - timedelta(seconds=1)))


def test_a_flag_is_announced_once_signed_and_audited(flagged: tuple[Runtime, Path, str], platform: Platform) -> None:
    """One POST the receiver verifies: model, version, request id and snapshots, no value; audited
    `model.notified`; a second pass sends nothing."""
    rt, _, request_id = flagged
    assert notify.send_due(rt) == 1
    [(body, key)] = platform.notices
    assert (body["model"], body["version"], body["request_id"], body["snapshots"]) == (
        "recsys", "7", request_id, [f"events:{OCT}"])
    assert key == f"flag-{flag_row(rt).id}-1"
    assert set(body) == {"event", "model", "version", "request_id", "snapshots", "reason", "state", "flagged_at"}
    assert flag_row(rt).notified_at is not None
    with rt.transaction() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.type == "model.notified")).one()
        assert event.request_id == request_id
    assert notify.send_due(rt) == 0 and len(platform.notices) == 1


def test_a_refused_notice_is_tried_again_after_a_wait(flagged: tuple[Runtime, Path, str], platform: Platform) -> None:
    """500, then a redirect (not followed): each counted, each waits longer; then taken."""
    rt, _, _ = flagged
    platform.script = [500, 302]
    assert notify.send_due(rt) == 0
    first = flag_row(rt)
    assert (first.notify_attempts, first.notified_at) == (1, None) and first.notify_after > utcnow()
    assert notify.send_due(rt) == 0  # not due yet: nothing sent
    due_now(rt)
    assert notify.send_due(rt) == 0 and flag_row(rt).notify_attempts == 2
    due_now(rt)
    assert notify.send_due(rt) == 1 and len(platform.notices) == 1


def test_a_closed_port_or_no_secret_fails_without_sending(flagged: tuple[Runtime, Path, str], platform: Platform,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody listening: a failure counted. The secret's variable unset: nothing sent at all."""
    rt, _, _ = flagged
    monkeypatch.delenv(SECRET_ENV)
    assert notify.send_due(rt) == 0 and platform.notices == [] and flag_row(rt).notify_attempts == 1
    monkeypatch.setenv(SECRET_ENV, SECRET)
    platform.server.shutdown()
    platform.server.server_close()
    due_now(rt)
    assert notify.send_due(rt) == 0 and flag_row(rt).notify_attempts == 2


def test_a_widened_flag_is_announced_again(flagged: tuple[Runtime, Path, str], platform: Platform) -> None:
    """After the notice, the version is found trained on November too (the guard's find): sent again,
    naming both snapshots, under a new idempotency key."""
    rt, root, request_id = flagged
    assert notify.send_due(rt) == 1
    with rt.transaction() as session:
        lineage.add(rt, "recsys", "7", [f"events:{NOV}"])
        flags.flag_trained_on(session, f"events:{NOV}", [request_id], lineage.TRAINED_AFTER)
    assert notify.send_due(rt) == 1
    body, key = platform.notices[-1]
    assert body["snapshots"] == [f"events:{OCT}", f"events:{NOV}"] and key.endswith("-2")


@pytest.mark.parametrize(("table", "problem"), [
    ('notify_url = "ftp://x/y"\nsecret_env = "S"', "an http:// or https:// URL"),
    ('notify_url = "https://u:p@x/y"\nsecret_env = "S"', "no credentials in the URL"),
    ('notify_url = "https://x/y"', "secret_env: missing"),
    ('notify_url = "https://x/y"\nsecret_env = "not a name"', "names an environment variable"),
    ('secret_env = "S"', "notify_url: missing"),
    ('notify_url = "https://x/y"\nsecret_env = "S"\ntimeout_seconds = 0', "between 1 and 120"),
])
def test_a_bad_models_table_is_refused_at_load(tmp_path: Path, table: str, problem: str) -> None:
    """One line naming the key."""
    with pytest.raises(ConfigError, match=problem):
        load(write_config(tmp_path, system_table("fake", "stub", uses=["user_id"]), top=f"[models]\n{table}\n"))


def test_without_notify_url_nothing_is_sent(make_runtime: MakeRuntime) -> None:
    """No [models] table: send_due is a no-op."""
    rt = make_runtime(system_table("fake", "stub", uses=["user_id"]))
    assert rt.config.models.notify_url is None and notify.send_due(rt) == 0
