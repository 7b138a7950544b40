"""A target system that cannot be reached fails after max_attempts with one line naming it and the
cause, while the request's other systems finish; once it is back, `erasure retry` completes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.conftest import free_port
from tests.faults.conftest import Forwarder, all_settled, erasure, status, submit, wait_for, write_config
from tests.worker.conftest import stub

pytestmark = pytest.mark.faults


@pytest.fixture
def app_behind_a_port(app_db: str):  # type: ignore[no-untyped-def]
    """The app database with users 7 and 8, reached through a port that answers only once opened."""
    app = sa.create_engine(app_db, poolclass=NullPool)
    with app.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id BIGINT PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO users VALUES (7), (8)")
    url = sa.make_url(app_db)
    way = Forwarder(free_port(), (url.host or "127.0.0.1", url.port or 5432))
    yield app, url.set(port=way.port).render_as_string(hide_password=False), way
    way.close()


def test_an_unreachable_system_fails_alone_and_retry_completes_it(tmp_path: Path, rabbitmq, app_behind_a_port,
                                                                   start_worker):
    """The system fails after max_attempts naming itself and the cause; the others finish; retry completes it."""
    app, through, way = app_behind_a_port
    systems = stub("vault") + f"""
[[systems]]
name = "app-db"
kind = "sql"
url = "{through}"
  [[systems.tables]]
  name = "users"
  where = {{ id = "user_id" }}
  action = "delete"
"""
    config = write_config(tmp_path, rabbitmq, systems)
    worker = start_worker(config)
    request_id = submit(config, 7)
    [failed] = wait_for("the request to settle", all_settled(config, [request_id]), alive=worker)

    assert failed["status"] == "failed", failed
    assert failed["by_system"]["vault"]["status"] == "erased"
    unreachable = failed["by_system"]["app-db"]
    assert (unreachable["status"], unreachable["attempts"]) == ("failed", 3), unreachable
    error = unreachable["error"]
    assert "\n" not in error and error.startswith("gave up after 3 attempts: sql system 'app-db'"), error
    assert "connection refused" in error.lower(), error
    assert [e["system"] for e in worker.events("system.failed")] == ["app-db"]

    way.open()
    retried = erasure(config, "retry", request_id)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"{request_id}  retrying app-db"
    [done] = wait_for("the retried request", all_settled(config, [request_id]), alive=worker)
    assert done["status"] == "completed", done
    assert (done["by_system"]["app-db"]["status"], done["by_system"]["app-db"]["items_erased"]) == ("erased", 1)
    assert status(config, request_id)["by_system"]["vault"]["attempts"] == 1  # not erased again
    with app.connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM users").scalars().all() == [8]
