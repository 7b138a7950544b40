"""The compose file: valid against the Compose specification, PostgreSQL, RabbitMQ, a worker, beat
and the API wired together by environment variables, and a config the worker accepts."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from compose_spec import PyOptions, parse_duration

from tests.helpers import DEPLOY, compose_file, environment_read
from worker.config import Config, load

NOT_IN_COMPOSE = {
    # ERASURE_SECRET_KEY (required here) wins over a key file, so one would never be read
    "ERASURE_KEY_FILE",
}


def compose_erasure_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the erasure-worker image."""
    return {name: service for name, service in compose_file()["services"].items()
            if service.get("image", "").startswith("erasure-worker")}


def test_compose_file_is_valid() -> None:
    """The Compose specification's parser takes the file (no unknown key, every reference defined)."""
    parsed = PyOptions(apply_merge=True).from_yaml((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    parsed.validate()
    assert set(parsed.service_names()) == {"postgres", "rabbitmq", "worker", "beat", "api"}


def test_every_environment_variable_the_code_reads_is_wired() -> None:
    """Each erasure service sets every variable the code reads, but the key file's."""
    read = environment_read()
    for name, service in compose_erasure_services().items():
        missing = set(read) - NOT_IN_COMPOSE - set(service["environment"])
        assert not missing, f"{name}: {sorted(missing)}"


def test_keys_must_be_given() -> None:
    """Compose refuses to start without the keys (`${VAR:?message}`), rather than deriving a subject
    key from the secret or starting a store whose identifiers nobody can read later."""
    for service in compose_erasure_services().values():
        for key in ("ERASURE_SECRET_KEY", "ERASURE_SUBJECT_KEY"):
            assert service["environment"][key].startswith(f"${{{key}:?"), key


@pytest.mark.parametrize("variable, service", [("ERASURE_STORE_URL", "postgres"), ("ERASURE_BROKER_URL", "rabbitmq")])
def test_urls_point_at_the_services_they_wait_for(variable: str, service: str) -> None:
    """The store and broker URLs name the compose services, and every erasure service starts only
    once those are healthy."""
    services = compose_file()["services"]
    for name, erasure in compose_erasure_services().items():
        assert urlsplit(erasure["environment"][variable]).hostname == service, name
        assert erasure["depends_on"][service] == {"condition": "service_healthy"}, name
        assert "healthcheck" in services[service]


def test_the_database_and_vhost_match_the_urls() -> None:
    """The PostgreSQL database and the RabbitMQ vhost the URLs name are the ones the services create."""
    services = compose_file()["services"]
    env = next(iter(compose_erasure_services().values()))["environment"]
    postgres, rabbitmq = services["postgres"]["environment"], services["rabbitmq"]["environment"]
    assert urlsplit(env["ERASURE_STORE_URL"]).path == "/" + postgres["POSTGRES_DB"]
    assert urlsplit(env["ERASURE_BROKER_URL"]).path == "/" + rabbitmq["RABBITMQ_DEFAULT_VHOST"]


def compose_config(monkeypatch: pytest.MonkeyPatch) -> Config:
    """deploy/erasure.toml, with the URLs compose gives it in the environment."""
    monkeypatch.setenv("ERASURE_STORE_URL", "postgresql+psycopg://erasure@postgres:5432/erasure")
    monkeypatch.setenv("ERASURE_BROKER_URL", "amqp://erasure@rabbitmq:5672/erasure")
    return load(DEPLOY / "erasure.toml")


def test_the_compose_config_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy/erasure.toml passes the config's validation, takes its URLs from the environment, and
    has an API token (`erasure api` refuses to start without one)."""
    config = compose_config(monkeypatch)
    assert config.store_url.startswith("postgresql") and config.broker_url.startswith("amqp")
    assert [s.name for s in config.systems] == ["app-db"] and config.api.tokens


def test_the_erasure_services_stop_gracefully(monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker waits longer than the worker's shutdown grace (as deploy/erasure.toml sets it), the
    services run read-only as a non-root user, and only the API publishes a port, on loopback."""
    grace = compose_config(monkeypatch).worker.shutdown_grace_seconds
    for name, service in compose_erasure_services().items():
        assert parse_duration(service["stop_grace_period"]) > grace and service["read_only"] is True
        assert not service["user"].startswith("0"), name
        assert all(p.startswith("127.0.0.1:") for p in service.get("ports", [])), name
    assert [name for name, s in compose_erasure_services().items() if "ports" in s] == ["api"]
