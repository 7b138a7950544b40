"""A target system that cannot be reached fails after max_attempts with one line naming it and the
cause, while the request's other systems finish; once it is back, `erasure retry` completes it."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.helpers import all_settled, erasure, fault_config, free_port, status, stub, submit, system_table, wait_for

pytestmark = pytest.mark.faults


class Forwarder:
    """A TCP port that forwards to another, opened only when told: the way to a target that is
    unreachable (connection refused) until it comes back."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.sockets: list[socket.socket] = []

    def open(self) -> None:
        """Listen and forward from now on."""
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.sockets.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        """Stop listening and cut every forwarded connection."""
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


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
    systems = stub("vault") + system_table("app-db", "sql", url=through, tables=[
        {"name": "users", "where": {"id": "user_id"}, "action": "delete"}])
    config = fault_config(tmp_path, rabbitmq, systems)
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
