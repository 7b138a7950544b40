"""The docs keep up with the code: every config key the code accepts is on docs/configuration.md (or
its connector kind's page), every command is in the README's commands table, and every relative
link in the README and docs/ leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from connectors import registry
from connectors.base import ConfigReader
from worker.config import EVERY_SYSTEM, parse
from worker.surfaces.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EVERY_KEY: dict[str, Any] = {  # one of each table the config has, so every reader runs
    "store_url": "sqlite:///erasure.db", "broker_url": "sqla+sqlite:///q.db", "deadline": "1 month",
    "worker": {"max_attempts": 5},
    "identifiers": {"user_id": {"pattern": "^[0-9]+$"}, "email": {"pattern": ".+@.+", "normalize": "lower"}},
    "resolvers": [{"system": "app-db", "from": "email", "to": "user_id", "table": "users", "column": "email",
                   "select": "id"}],
    "api": {"tokens": {}}, "mlflow": {"tracking_uri": "http://mlflow:5000"},
    "models": {"notify_url": "https://train.internal/hooks/erasure", "secret_env": "TRAIN_SIGNING_SECRET",
               "timeout_seconds": 10},
    "systems": [
        {"name": "app-db", "kind": "sql", "url": "sqlite:///app.db", "retain": {"reason": "tax law"},
         "tables": [{"name": "users", "where": {"id": "user_id"}, "action": "delete",
                     "retain": {"reason": "tax law", "until": "2030-01-01"}},
                    {"name": "address", "where": {"id": "users.address_id"}, "action": "delete_unreferenced",
                     "set": {"street": {"hash": True}, "zip": {"random": True}, "city": "null"}}]},
        {"name": "uploads", "kind": "s3", "bucket": "user-uploads", "prefixes": ["u/{user_id}/"]},
        {"name": "clicks", "kind": "snapshot", "location": "/data/clicks", "where": {"user_id": "user_id"}},
        {"name": "fake", "kind": "stub", "uses": ["user_id"]},
        {"name": "billing", "kind": "http", "url": "https://billing.internal/users/{user_id}", "method": "POST",
         "body": {"user": "{user_id}"}, "headers": {"Authorization": {"env": "DOCS_TOKEN", "prefix": "Bearer "}},
         "secret_env": "DOCS_SECRET", "timeout_seconds": 10, "async_timeout_seconds": 60,
         "verify_url": "https://billing.internal/users/{user_id}"},
        {"name": "cache", "kind": "redis", "url": "redis://cache:6379/0", "keys": ["s:{user_id}"],
         "hashes": [{"key": "profiles", "field": "{user_id}"}], "sets": [{"key": "online", "member": "{user_id}"}],
         "sorted_sets": [{"key": "board", "member": "{user_id}"}], "scan": ["c:{user_id}:"], "scan_count": 500,
         "timeout": 5},
        {"name": "embeddings", "kind": "vector", "backend": "lancedb", "uri": "s3://ml-vectors/lance",
         "table": "documents", "where": {"user_id": "user_id"}, "match": "exact", "cleanup_older_than": "7 days",
         "endpoint_url": "http://minio:9000", "region": "us-east-1"},
        {"name": "desk", "kind": "manual", "uses": ["email"], "instructions": "Delete the customer's tickets."},
    ],
}


def accepted_keys(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """The keys each reader accepts, by the page that must list them: a kind's own page, or configuration.md."""
    pages: dict[str, set[str]] = {}
    only, kinds = ConfigReader.only, {s["name"]: s["kind"] for s in EVERY_KEY["systems"]}

    def recording(reader: ConfigReader, *allowed: str) -> None:
        system = re.match(r"system '([^']+)'", reader.place)
        page = f"connectors/{kinds[system[1]]}.md" if system else "configuration.md"
        pages.setdefault(page, set()).update(allowed)
        only(reader, *allowed)

    monkeypatch.setattr(ConfigReader, "only", recording)
    parse(EVERY_KEY, Path("erasure.toml"))
    return pages


def test_every_config_key_is_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key the code accepts but no page names (in backticks) is a key nobody can find."""
    missing = []
    for page, keys in accepted_keys(monkeypatch).items():
        text = (DOCS / page).read_text()
        missing += [f"{page}: {key}" for key in sorted(keys) if not re.search(rf"`[^`\n]*\b{key}\b[^`\n]*`", text)]
    assert missing == []


def test_the_keys_of_every_system_are_on_each_page() -> None:
    """The keys every system takes whatever its kind (read by the loader, never by the kind's reader)
    are on configuration.md and on each kind's page."""
    pages = ["configuration.md", *(f"connectors/{kind}.md" for kind in registry.kinds())]
    missing = [f"{page}: {key}" for page in pages for key in EVERY_SYSTEM
               if f"`{key}`" not in (DOCS / page).read_text()]
    assert missing == []


def test_every_kind_has_a_page() -> None:
    """Each connector kind installed has its page in docs/connectors/."""
    assert [k for k in registry.kinds() if not (DOCS / "connectors" / f"{k}.md").exists()] == []


def commands(parser: Any = None, prefix: str = "erasure") -> list[str]:
    """Every command line the parser takes, subcommands spelled out (`erasure lineage add`)."""
    parser = parser or build_parser()
    found = []
    for action in parser._actions:
        for name, sub in getattr(action, "choices", None).items() if hasattr(action, "_name_parser_map") else []:
            nested = commands(sub, f"{prefix} {name}")
            found += nested or [f"{prefix} {name}"]
    return found


def test_every_command_is_in_the_readme_table() -> None:
    """The README's commands table names every command the CLI has."""
    table = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `erasure ")]
    cells = " ".join(re.split(r"(?<!\\)\|", line)[1] for line in table)  # `\|` inside a cell is no border
    missing = []
    for command in commands():
        *head, last = command.split()
        spelled = " ".join(head)
        if not re.search(rf"`{re.escape(spelled)} (?:[^`]*\|)?{re.escape(last)}\b", cells):
            missing.append(command)
    assert missing == []


def test_links_in_readme_and_docs_resolve() -> None:
    """A relative link in the README or a docs page points to a file that exists."""
    broken = []
    for page in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []
