"""Art. 17(3) exemptions people decide: a system or a sql table the config retains, left
untouched and erased by itself once its end date has passed; and one system of one request
exempted by a DPO with `erasure exempt`, refused where it would come too late or race a worker."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors.base import Retention
from connectors.stub import StubConnector
from tests.helpers import TAX, ListDispatch, MakeRuntime, drain, pass_the_retention, stub, system_table, write_config
from worker.config import load
from worker.engine import fanout, intake, reconcile
from worker.errors import ConfigError
from worker.runtime import Runtime
from worker.store.models import AuditEvent, SystemStatus, SystemTask
from worker.surfaces import views
from worker.surfaces.cli import main


def systems(rt: Runtime, request_id: str) -> dict[str, dict[str, Any]]:
    """The status JSON's systems of one request, by name."""
    return {s["system"]: s for s in views.status(rt, request_id)["systems"]}


def calls(rt: Runtime, system: str) -> int:
    """How many times a stub system's connector was asked to erase."""
    connector = rt.connector(system)
    assert isinstance(connector, StubConnector)
    return connector.calls


def exempt(capsys: pytest.CaptureFixture[str], rt: Runtime, request_id: str, system: str,
           reason: str = "legal hold: litigation 2026/118") -> tuple[int, str, str]:
    """`erasure exempt` on the runtime's config; exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(["exempt", request_id, "--system", system, "--reason", reason, "--config", str(rt.config.path)])
    out, err = capsys.readouterr()
    return code, out, err


# --- the config ----------------------------------------------------------------------------------


def test_retain_is_read_on_a_system_and_on_a_sql_table(tmp_path: Path) -> None:
    """`retain` gives a reason and an end date, quoted or as a TOML date, on any system and any sql table."""
    invoices = {"name": "invoices", "where": {"user_id": "user_id"}, "action": "delete",
                "retain": {"reason": "tax law", "until": date(2035, 12, 31)}}  # a TOML date, not a string
    sql = system_table("app-db", "sql", url="sqlite:///app.db", tables=[invoices])
    config = load(write_config(tmp_path, stub("billing", retain=TAX) + stub("crm") + sql))
    assert config.system("billing").retain == Retention("kept 10 years for tax law", date(2035, 12, 31))
    assert config.system("crm").retain is None
    assert config.system("app-db").tables[0].retain == Retention("tax law", date(2035, 12, 31))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("retain", "key", "problem"), [
    ({"reason": "tax", "until": "2035-02-30"}, "until", "is not a date"),
    ({"reason": "tax", "until": "31/12/2035"}, "until", "YYYY-MM-DD"),
    ({"reason": "tax", "until": "20351231"}, "until", "YYYY-MM-DD"),
    ({"reason": "tax", "until": 2035}, "until", "YYYY-MM-DD"),
    ({"until": "2035-12-31"}, "reason", "missing"),
    ({"reason": " ", "until": "2035-12-31"}, "reason", "must not be empty"),
    ({"reason": "tax", "untill": "2035-12-31"}, "untill", "unknown key"),
])
def test_a_bad_retain_on_a_system_is_one_line_naming_file_system_and_key(
    tmp_path: Path, retain: dict[str, Any], key: str, problem: str,
) -> None:
    """A bad retention fails at start-up: one line with the file, the system and the key."""
    with pytest.raises(ConfigError) as refused:
        load(write_config(tmp_path, stub("billing", retain=retain)))
    message = str(refused.value)
    assert "\n" not in message and "erasure.toml" in message
    assert "system 'billing' retain:" in message and f"{key}:" in message and problem in message


def test_a_bad_retain_on_a_sql_table_names_the_table(tmp_path: Path) -> None:
    """On a sql table, the error names the system, the table's place and the key."""
    invoices = {"name": "invoices", "where": {"user_id": "user_id"}, "action": "delete",
                "retain": {"reason": "tax law", "until": "2035-13-01"}}
    sql = system_table("app-db", "sql", url="sqlite:///app.db", tables=[invoices])
    with pytest.raises(ConfigError, match=r"system 'app-db' tables\[0\] retain: until: '2035-13-01' is not a date"):
        load(write_config(tmp_path, sql))


# --- a retained system ---------------------------------------------------------------------------


def test_a_retained_system_is_exempt_without_its_connector(make_runtime: MakeRuntime) -> None:
    """At fan-out a retained system turns exempt with its reason, gets no message, and the request completes."""
    rt = make_runtime(stub("billing", retain=TAX) + stub("crm"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    fanout.start(rt, request_id)
    assert isinstance(rt.dispatch, ListDispatch)
    assert [m[:3] for m in rt.dispatch.sent if m[0] == "erase"] == [("erase", request_id, "crm")]
    drain(rt)
    billing = systems(rt, request_id)["billing"]
    assert (billing["status"], billing["reason"]) == ("exempt", "retained until 2035-12-31: kept 10 years for tax law")
    assert views.status(rt, request_id)["status"] == "completed"
    assert calls(rt, "billing") == 0 and calls(rt, "crm") == 1
    with rt.transaction() as session:
        recheck = session.scalar(select(SystemTask.recheck_at).where(SystemTask.system == "billing"))
    assert recheck == datetime(2036, 1, 1, tzinfo=UTC)


def test_a_request_whose_every_system_is_retained_completes(make_runtime: MakeRuntime) -> None:
    """With nothing to erase, the request settles at fan-out."""
    rt = make_runtime(stub("billing", retain={"reason": "statutory archive"}))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    status = views.status(rt, request_id)
    assert (status["status"], status["systems"][0]["status"]) == ("completed", "exempt")
    assert reconcile.recheck_exemptions(rt) == 0  # no end date: never rechecked


def test_a_retained_system_is_erased_once_its_end_date_has_passed(make_runtime: MakeRuntime) -> None:
    """After `until` the reconciler sends it back, the connector erases it, and the request stays completed."""
    rt = make_runtime(stub("billing", retain=TAX))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    assert reconcile.recheck_exemptions(rt) == 0
    later = make_runtime(stub("billing", retain={**TAX, "until": "2020-12-31"}))  # the same store, years on
    pass_the_retention(later, request_id, "billing")
    assert reconcile.recheck_exemptions(later) == 1
    drain(later)
    billing = systems(later, request_id)["billing"]
    assert (billing["status"], billing["reason"], billing["items_erased"]) == ("erased", None, 1)
    assert calls(later, "billing") == 1
    assert views.status(later, request_id)["status"] == "completed"


def test_a_system_met_again_while_retained_stays_exempt(make_runtime: MakeRuntime) -> None:
    """A message that reaches a retained system some other way (a re-send) does not erase it."""
    rt = make_runtime(stub("billing", retain=TAX))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    pass_the_retention(rt, request_id, "billing")  # a recheck comes early: the retention still holds
    reconcile.recheck_exemptions(rt)
    drain(rt)
    assert systems(rt, request_id)["billing"]["status"] == "exempt" and calls(rt, "billing") == 0


# --- a retained sql table ------------------------------------------------------------------------


def invoices_world(tmp_path: Path, until: str | None) -> str:
    """An app database with the subject's user row and two invoices; the invoices table retained."""
    db = sqlite3.connect(tmp_path / "app.db")
    db.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY);
        CREATE TABLE invoices (id INTEGER PRIMARY KEY, user_id INTEGER, total INTEGER);
        INSERT INTO users VALUES (42), (7);
        INSERT INTO invoices VALUES (1, 42, 10), (2, 42, 20), (3, 7, 30);
    """)
    db.commit()
    db.close()
    return sql_system(tmp_path, until)


def sql_system(tmp_path: Path, until: str | None) -> str:
    """The TOML of the app database, its invoices retained (until a date, if given)."""
    retain = {"reason": "tax law"} | ({"until": until} if until else {})
    return system_table("app-db", "sql", url=f"sqlite:///{tmp_path}/app.db", tables=[
        {"name": "users", "where": {"id": "user_id"}, "action": "delete"},
        {"name": "invoices", "where": {"user_id": "user_id"}, "action": "delete", "retain": retain},
    ])


def rows(tmp_path: Path, table: str) -> list[tuple[Any, ...]]:
    """Every row of one table of the app database."""
    with sqlite3.connect(tmp_path / "app.db") as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()


def test_a_retained_table_is_left_and_listed_in_evidence(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """The other tables are erased; the retained one keeps its rows, shown with its reason; the system is exempt."""
    rt = make_runtime(invoices_world(tmp_path, "2035-12-31"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    assert rows(tmp_path, "users") == [(7,)]
    assert len(rows(tmp_path, "invoices")) == 3
    app = systems(rt, request_id)["app-db"]
    assert (app["status"], app["items_erased"]) == ("exempt", 1)
    assert app["reason"] == "table invoices retained until 2035-12-31: tax law (2 rows kept)"
    tables = {t["table"]: t for t in views.evidence(rt, request_id)["app-db"]["tables"]}
    assert tables["invoices"] == {"table": "invoices", "action": "retain", "rows": 0, "rows_kept": 2,
                                  "retained": {"reason": "tax law", "until": "2035-12-31"}}
    assert views.status(rt, request_id)["status"] == "completed"


def test_a_retained_table_is_erased_after_its_end_date(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """Once `until` has passed, the recheck deletes the retained rows; the first pass stays in the evidence."""
    rt = make_runtime(invoices_world(tmp_path, "2035-12-31"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    later = make_runtime(sql_system(tmp_path, "2020-12-31"))
    pass_the_retention(later, request_id, "app-db")
    assert reconcile.recheck_exemptions(later) == 1
    drain(later)
    assert rows(tmp_path, "invoices") == [(3, 7, 30)]
    app = systems(later, request_id)["app-db"]
    assert (app["status"], app["items_erased"]) == ("erased", 3)
    assert [e["items"] for e in views.evidence(later, request_id)["app-db"]["earlier"]] == [1]


def test_a_retained_table_without_the_subject_leaves_the_system_erased(make_runtime: MakeRuntime,
                                                                        tmp_path: Path) -> None:
    """Nothing kept, nothing to exempt: the system is erased, the retained table listed with 0 rows kept."""
    rt = make_runtime(invoices_world(tmp_path, None))
    request_id = intake.submit(rt, {"user_id": "7"}).request_id
    with sqlite3.connect(tmp_path / "app.db") as db:
        db.execute("DELETE FROM invoices WHERE user_id = 7")
    drain(rt)
    app = systems(rt, request_id)["app-db"]
    assert (app["status"], app["reason"]) == ("erased", None)
    assert views.evidence(rt, request_id)["app-db"]["tables"][1]["rows_kept"] == 0


# --- a DPO's exemption ---------------------------------------------------------------------------


def test_a_dpo_exempts_a_pending_system_which_is_never_erased(make_runtime: MakeRuntime,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Exempted before the worker reaches it, a system keeps the DPO's reason and its connector is never called."""
    rt = make_runtime(stub("crm") + stub("archive"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    code, out, _ = exempt(capsys, rt, request_id, "archive")
    assert code == 0 and "archive exempt" in out
    drain(rt)
    archive = systems(rt, request_id)["archive"]
    assert (archive["status"], archive["reason"]) == ("exempt", "legal hold: litigation 2026/118")
    assert calls(rt, "archive") == 0
    assert views.status(rt, request_id)["status"] == "completed"


def test_a_dpo_exempting_the_failed_system_completes_the_request(make_runtime: MakeRuntime,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A request failed by one system completes once the DPO exempts it; the audit trail says who and why."""
    rt = make_runtime(stub("crm") + stub("legacy", fail_permanently=True))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    assert views.status(rt, request_id)["status"] == "failed"
    code, out, _ = exempt(capsys, rt, request_id, "legacy", "kept under Art. 17(3)(e): pending claim")
    assert code == 0 and "request completed" in out
    status = views.status(rt, request_id)
    assert (status["status"], status["systems"][1]["status"], status["systems"][1]["error"]) == (
        "completed", "exempt", None)
    with rt.transaction() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.type == "system.exempt")).one()
    assert (event.system, event.data["by"], event.data["reason"]) == (
        "legacy", "dpo", "kept under Art. 17(3)(e): pending claim")


def test_a_dpo_exemption_of_a_locked_system_is_for_good(make_runtime: MakeRuntime,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A system exempt by a lock, exempted by a DPO, takes the DPO's reason and is not rechecked."""
    rt = make_runtime(stub("vault", locked_for_seconds=1))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    assert exempt(capsys, rt, request_id, "vault")[0] == 0
    time.sleep(1.1)  # the lock has ended: without the DPO's exemption, the reconciler would recheck
    with rt.transaction() as session:
        assert session.scalar(select(SystemTask.recheck_at)) is None
    assert reconcile.recheck_exemptions(rt) == 0
    assert systems(rt, request_id)["vault"]["reason"] == "legal hold: litigation 2026/118"


@pytest.mark.parametrize("settled", ["erased", "not_found"])
def test_a_dpo_cannot_exempt_what_is_already_settled(make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str],
                                                     settled: str) -> None:
    """Too late once a system was erased or found empty: exit 2, one line, nothing changed."""
    rt = make_runtime(stub("crm", items=1 if settled == "erased" else 0))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)
    code, _, err = exempt(capsys, rt, request_id, "crm")
    assert code == 2 and err.count("\n") == 1 and f"already {settled}" in err
    assert systems(rt, request_id)["crm"]["status"] == settled


def test_a_dpo_cannot_exempt_a_system_while_it_runs(make_runtime: MakeRuntime,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A system a worker holds is refused with a one-line "try again", and the worker's claim stands."""
    rt = make_runtime(stub("crm"))
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    fanout.start(rt, request_id)
    with rt.transaction() as session:
        session.execute(update(SystemTask).values(status=SystemStatus.RUNNING, attempts=1,
                                                  lease_until=datetime.now(UTC) + timedelta(minutes=5)))
    code, _, err = exempt(capsys, rt, request_id, "crm")
    assert code == 2 and err.count("\n") == 1 and "try again" in err
    assert systems(rt, request_id)["crm"]["status"] == "running"


@pytest.mark.parametrize(("request_id", "system", "reason", "expected"), [
    ("no-such-request", "crm", "legal hold", 3),
    (None, "nope", "legal hold", 2),
    (None, "crm", "   ", 2),
    (None, "crm", "two\nlines", 2),
])
def test_a_dpo_exemption_refused_changes_nothing(make_runtime: MakeRuntime, capsys: pytest.CaptureFixture[str],
                                                 request_id: str | None, system: str, reason: str,
                                                 expected: int) -> None:
    """An unknown request is exit 3; an unknown system or a bad reason exit 2; one line, the system still pending."""
    rt = make_runtime(stub("crm"))
    known = intake.submit(rt, {"user_id": "42"}).request_id
    code, _, err = exempt(capsys, rt, request_id or known, system, reason)
    assert code == expected and err.count("\n") == 1
    assert systems(rt, known)["crm"]["status"] == "pending"
