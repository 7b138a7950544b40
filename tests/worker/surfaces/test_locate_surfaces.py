"""Where people ask what an erasure would take: `erasure locate`, `submit --dry-run` (the same, recording
no request), `erasure export` (a 0600 zip, never over a file), `POST /v1/locate` (scope read, 422 on bad
input) and the DPO page's preview button on a request not yet done; counts everywhere, never a value."""

from __future__ import annotations

import json
import stat
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.helpers import (
    EMAIL,
    SHOP_COUNTS,
    SUBJECT,
    ListDispatch,
    api_tokens,
    drain,
    resolver,
    shop,
    sign_in,
    stub,
    write_config,
)
from worker.config import load
from worker.engine import intake
from worker.runtime import Runtime
from worker.store.models import AuditEvent, Request
from worker.surfaces.api import create_app
from worker.surfaces.cli import main

with warnings.catch_warnings():  # starlette asks for httpx2, which is not released alongside it yet
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

READ, SUBMIT = "read-token-for-locate", "submit-token-for-locate"
EMAIL_RESOLVER = resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """An erasure.toml over a shop database (an email resolver) and a stub, with a read and a submit token."""
    return write_config(tmp_path, EMAIL_RESOLVER + shop(f"sqlite:///{tmp_path}/app.db") + stub("crm"),
                        top=api_tokens({READ: ["read"], SUBMIT: ["submit"]}))


@pytest.fixture
def rt(config: Path) -> Iterator[Runtime]:
    """A runtime over that config (messages kept, never sent)."""
    made = Runtime(load(config), dispatch=ListDispatch())
    yield made
    made.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    """The API and the page over that runtime, following no redirect by itself."""
    with TestClient(create_app(rt), follow_redirects=False) as made:
        yield made


def requests_recorded(rt: Runtime) -> int:
    """How many requests the store holds."""
    with rt.transaction() as session:
        return session.scalar(select(func.count()).select_from(Request)) or 0


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The command's exit code, stdout and stderr."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_locate_prints_counts_as_json_and_as_a_table(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--json` prints the counts per system; without it a table; never the identifier."""
    code, out, _ = run(capsys, "locate", "--config", str(config), "--subject", f"email={EMAIL}", "--json")
    found = json.loads(out)
    assert code == 0 and found["items"] == 7
    assert found["systems"][0]["counts"] == {"tables": SHOP_COUNTS}
    code, out, _ = run(capsys, "locate", "--config", str(config), "--subject", f"email={EMAIL}")
    assert code == 0 and "users=1 orders=2 order_items=3" in out and "nothing was changed" in out
    assert EMAIL not in out


def test_submit_dry_run_prints_what_locate_prints_and_records_no_request(
        config: Path, rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    """`submit --dry-run --json` prints the locate object and records nothing but the audit event."""
    code, out, _ = run(capsys, "submit", "--dry-run", "--config", str(config), "--subject", "user_id=42", "--json")
    assert code == 0 and json.loads(out)["systems"][0]["counts"] == {"tables": SHOP_COUNTS}
    assert requests_recorded(rt) == 0
    with rt.transaction() as session:
        assert session.scalars(select(AuditEvent.type)).all() == ["subject.located"]


def test_locate_and_dry_run_refuse_bad_input_with_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A value its pattern refuses, or a bad --requested-by on a dry run, exits 2 in one line."""
    for argv in (["locate", "--subject", "user_id=4x2"],
                 ["submit", "--dry-run", "--subject", "user_id=42", "--requested-by", "line\nbreak"]):
        code, out, err = run(capsys, *argv, "--config", str(config))
        assert (code, out, err.count("\n")) == (2, "", 1)


def test_export_writes_a_0600_zip_and_refuses_to_overwrite(config: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The zip holds the manifest and the tables' rows, mode 0600; a second export to it exits 2, the file kept."""
    out = tmp_path / "jane.zip"
    code, printed, _ = run(capsys, "export", "--config", str(config), "--subject", f"email={EMAIL}", "--out", str(out))
    assert code == 0 and "mode 0600" in printed and EMAIL not in printed
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with zipfile.ZipFile(out) as archive:
        assert {"manifest.json", "app-db/tables/users.jsonl", "models.jsonl"} <= set(archive.namelist())
    kept = out.read_bytes()
    code, _, err = run(capsys, "export", "--config", str(config), "--subject", "user_id=42", "--out", str(out))
    assert code == 2 and "exists" in err and out.read_bytes() == kept


def test_the_api_answers_the_counts_to_a_read_token(client: TestClient, rt: Runtime) -> None:
    """POST /v1/locate with a read token: 200 and the counts, no value; nothing recorded but the audit event."""
    answer = client.post("/v1/locate", json={"subject": {"email": EMAIL}}, headers={"Authorization": f"Bearer {READ}"})
    assert answer.status_code == 200
    assert answer.json()["systems"][0]["counts"] == {"tables": SHOP_COUNTS}
    assert EMAIL not in answer.text and requests_recorded(rt) == 0


@pytest.mark.parametrize(("token", "body", "status"), [
    (SUBMIT, {"subject": {"user_id": "42"}}, 403),
    (None, {"subject": {"user_id": "42"}}, 401),
    (READ, {"subject": {"user_id": "4x2"}}, 422),
    (READ, {"subject": {"user_id": "42"}, "requested_by": "x"}, 422),
    (READ, {"subject": {"user_id": "42"}, "scope": "everything"}, 422),
    (READ, [1], 422),
])
def test_the_api_refuses_what_it_must(client: TestClient, rt: Runtime, token: str | None, body: Any,
                                      status: int) -> None:
    """A token without `read`, none, a bad value, a field locate does not take, a bad scope, not an object:
    refused with a problem that does not echo the value; no audit event."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = client.post("/v1/locate", json=body, headers=headers)
    assert answer.status_code == status and "4x2" not in answer.text
    with rt.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_the_page_previews_a_received_request_in_counts(client: TestClient, rt: Runtime) -> None:
    """A received request's page has the preview button; the preview shows each system's counts, never
    the identifier; once the request is done the button is gone and a preview is refused."""
    request_id = intake.submit(rt, {"email": EMAIL}).request_id
    sign_in(client, READ)
    page = client.get(f"/requests/{request_id}").text
    assert f'action="/requests/{request_id}/preview"' in page
    preview = client.get(f"/requests/{request_id}/preview")
    assert preview.status_code == 200
    assert "<code>users</code>: 1 row(s)" in preview.text and "<code>order_items</code>: 3 row(s)" in preview.text
    assert EMAIL not in preview.text and "Main St" not in preview.text
    drain(rt)
    assert "/preview" not in client.get(f"/requests/{request_id}").text
    assert client.get(f"/requests/{request_id}/preview").status_code == 409


def test_the_preview_needs_a_session(client: TestClient, rt: Runtime) -> None:
    """Without signing in, the preview is the sign-in page (401), and nothing is looked at."""
    request_id = intake.submit(rt, {"user_id": SUBJECT}).request_id
    assert client.get(f"/requests/{request_id}/preview").status_code == 401
    with rt.transaction() as session:
        assert "subject.located" not in session.scalars(select(AuditEvent.type)).all()
