"""Fixtures of the deploy tests: real `erasure` processes started the way the manifests start them,
against a PostgreSQL database and a RabbitMQ vhost of their own (what they read under deploy/, and
how they run a manifest's command, are in tests/helpers/deploy.py)."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    DEPLOY,
    PG_ADMIN_URL,
    Api,
    Process,
    Served,
    Stack,
    container_command,
    free_port,
    own_vhost,
    scratch_database,
    seed_store,
    served_by,
)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """deploy/erasure.toml with its store on a PostgreSQL database and its broker on a RabbitMQ vhost,
    both of these tests' own, and fresh keys: what compose and the Secrets give every container."""
    with scratch_database(PG_ADMIN_URL, 5432, "PostgreSQL") as store, own_vhost("erasure-deploy") as broker:
        bin_dir = str(Path(sys.executable).parent)  # as PATH=/opt/venv/bin:$PATH in the image
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "ERASURE_CONFIG": str(DEPLOY / "erasure.toml"), "ERASURE_LOG_FORMAT": "json",
               "ERASURE_STORE_URL": store, "ERASURE_BROKER_URL": broker,
               "ERASURE_SECRET_KEY": secrets.token_hex(32), "ERASURE_SUBJECT_KEY": secrets.token_hex(32)}
        env.pop("ERASURE_KEY_FILE", None)
        env.pop("ERASURE_MLFLOW_TRACKING_URI", None)
        yield Stack(env, store, broker)


@pytest.fixture(scope="session")
def api(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API Deployment's command on a free loopback port (instead of 0.0.0.0:8080) over a seeded store."""
    import httpx

    seed_store(stack)
    command = container_command("erasure-api")
    port = free_port()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    process = Process(command, stack.env, tmp_path_factory.mktemp("api") / "api.log")
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/openapi.json", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        process.wait_until("the API to answer", answers)
        yield Api(url, process)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def served(api: Api) -> Served:
    """The metrics of a real scrape of the API, with the read token of deploy/erasure.toml."""
    import httpx

    answer = httpx.get(f"{api.url}/metrics", headers={"Authorization": "Bearer compose-dev-token"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return served_by(answer.text)
