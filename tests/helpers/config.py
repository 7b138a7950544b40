"""The config builder: every test that writes an erasure.toml writes it with write_config."""


from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date
from hashlib import sha256
from pathlib import Path
from typing import Any

IDENTIFIERS: dict[str, dict[str, str]] = {
    "user_id": {"pattern": "^[0-9]{1,18}$"},
    "email": {"pattern": r"^[^@\s]+@[^@\s]+$", "normalize": "lower"},
}
USER_IDS_ONLY = {"user_id": IDENTIFIERS["user_id"]}
FAST_RETRIES: dict[str, Any] = {"max_attempts": 3, "retry_backoff_seconds": 0.01}
NO_BATCH_WAIT = {"batch_wait_seconds": 0}  # one request at a time: no pass waits for others to join


def toml_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, quoted otherwise."""
    return key if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """A Python value as a TOML value (strings, numbers, booleans, dates, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def toml_lines(fields: Mapping[str, Any]) -> str:
    """One `key = value` line per field."""
    return "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in fields.items())


def system_table(name: str, kind: str, **keys: Any) -> str:
    """The TOML of one [[systems]] table (a sql system's tables as a list of inline tables)."""
    return "[[systems]]\n" + toml_lines({"name": name, "kind": kind, **keys})


def stub(name: str, uses: list[str] | None = None, **knobs: Any) -> str:
    """The TOML of one stub system."""
    return system_table(name, "stub", uses=uses or ["user_id"], **knobs)


def resolver(system: str, source: str, target: str, query: str) -> str:
    """The TOML of one [[resolvers]] table: the system's query turns a `source` value into `target` values."""
    return "[[resolvers]]\n" + toml_lines({"system": system, "from": source, "to": target, "query": query})


def api_tokens(scopes: Mapping[str, Sequence[str]]) -> str:
    """The [api.tokens] table giving each token (known by its SHA-256) its scopes."""
    return "[api.tokens]\n" + toml_lines({sha256(token.encode()).hexdigest(): list(s) for token, s in scopes.items()})


def write_config(folder: Path, systems: str = "", *, store_url: str | None = None, broker_url: str | None = None,
                 identifiers: Mapping[str, Mapping[str, str]] = IDENTIFIERS, top: str = "",
                 worker: Mapping[str, Any] | None = None, name: str = "erasure.toml") -> Path:
    """An erasure.toml in the folder: its store and broker (SQLite files there unless given), the `top`
    level's own keys and tables, a [worker] table retrying at once (the given keys over it), the
    identifier types and the systems (and any resolvers) as TOML."""
    path = folder / name
    path.write_text(
        toml_lines({"store_url": store_url or f"sqlite:///{folder}/state.db",
                    "broker_url": broker_url or f"sqla+sqlite:///{folder}/queue.db"})
        + f"{top}\n[worker]\n{toml_lines({**FAST_RETRIES, **(worker or {})})}\n"
        + f"[identifiers]\n{toml_lines(identifiers)}\n{systems}"
    )
    return path
