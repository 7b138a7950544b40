"""Reading a `kind = "vector"` system: a bad table is one line naming the file, the system and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connectors.base import EnvSecret, Subject
from connectors.errors import ConfigError
from connectors.vector.config import VectorConfig
from tests.helpers import system_config, user

LANCE = {"name": "emb", "kind": "vector", "backend": "lancedb", "uri": "/data/lance", "table": "docs",
         "where": {"user_id": "user_id"}}
ROOT = Path(__file__).resolve().parents[3]
QDRANT = {"name": "search", "kind": "vector", "backend": "qdrant", "path": "/data/qdrant", "collection": "docs",
          "where": {"user_id": "user_id"}}


def read(raw: dict[str, Any]) -> VectorConfig:
    """The system table as start-up reads it."""
    return system_config(VectorConfig, raw, {"user_id": (), "email": ("lower",)})


def test_a_lancedb_system_reads_its_keys() -> None:
    """uri, table, where, match and cleanup_older_than become the config; training is on by default."""
    config = read(LANCE | {"where": {"user_id": "user_id", "email": "email"}, "match": {"email": "exact"},
                           "cleanup_older_than": "7 days"})
    assert (config.uri, config.table, config.cleanup_older_than) == ("/data/lance", "docs", 7 * 86400)
    assert config.identifier_types == frozenset({"user_id", "email"})
    assert [(k.column, k.fold) for k in config.keys] == [("user_id", ()), ("email", None)]
    assert config.training is True


def test_a_qdrant_server_reads_its_api_key_from_the_environment_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """api_key_env names the variable: the config holds the name (unset at load is fine), the key is read
    when the client is made, and never shows in the config's repr."""
    monkeypatch.delenv("QDRANT_KEY", raising=False)
    config = read({k: v for k, v in QDRANT.items() if k != "path"} | {"url": "https://q:6333",
                                                                         "api_key_env": "QDRANT_KEY"})
    assert (config.url, config.api_key, config.table) == ("https://q:6333", EnvSecret("QDRANT_KEY"), "docs")
    monkeypatch.setenv("QDRANT_KEY", "k-123")
    assert config.api_key is not None and config.api_key.reveal() == "k-123"
    assert "k-123" not in repr(config)


@pytest.mark.parametrize(("raw", "message"), [
    (LANCE | {"backend": "milvus"}, "backend: must be"),
    (LANCE | {"collection": "docs"}, 'collection: is for backend = "qdrant"'),
    (QDRANT | {"cleanup_older_than": 0}, 'cleanup_older_than: is for backend = "lancedb"'),
    (QDRANT | {"url": "http://q:6333"}, "url: give either"),
    ({k: v for k, v in QDRANT.items() if k != "path"}, "url: give either"),
    (QDRANT | {"api_key_env": "K"}, "api_key_env: is for a server"),
    ({k: v for k, v in QDRANT.items() if k != "path"} | {"url": "q:6333"}, "url: must be an http"),
    (LANCE | {"where": {}}, "where: names no field"),
    (LANCE | {"where": {"meta.user_id": "user_id"}}, "a plain name"),
    (LANCE | {"where": {"user_id": "phone"}}, "unknown identifier type"),
    (LANCE | {"match": {"email": "exact"}}, "match.email: is not a column"),
    (LANCE | {"uri": "gs://b/x"}, "uri: must be a local folder"),
    (LANCE | {"uri": "s3://B_ad/x"}, "is not an S3 bucket name"),
    (LANCE | {"endpoint_url": "http://minio:9000"}, "endpoint_url: is for an s3:// uri only"),
    (LANCE | {"table": "a b"}, "table: 'a b' is not a plain name"),
    (LANCE | {"cleanup_older_than": "7"}, 'cleanup_older_than: 0, or an age like "7 days"'),
    (LANCE | {"cleanup_older_than": True}, "cleanup_older_than"),
    (LANCE | {"colour": "red"}, "colour: unknown key"),
])
def test_a_bad_table_is_refused_naming_the_key(raw: dict[str, Any], message: str) -> None:
    """Each mistake stops start-up with one line naming erasure.toml, the system and the key."""
    with pytest.raises(ConfigError, match=message) as raised:
        read(raw)
    assert str(raised.value).startswith(f"erasure.toml: system {raw['name']!r}: ")


def test_an_api_key_variable_name_that_is_no_variable_s_is_refused() -> None:
    """An api_key_env that is no environment variable's name (the key itself, by mistake) stops start-up
    without repeating it."""
    raw = {k: v for k, v in QDRANT.items() if k != "path"} | {"url": "http://q:6333", "api_key_env": "k-123-secret"}
    with pytest.raises(ConfigError, match="api_key_env: names an environment variable") as refused:
        read(raw)
    assert "k-123" not in str(refused.value)


@pytest.mark.parametrize(("given", "seconds"), [(0, 0), ("30 minutes", 1800), ("12 hours", 43200), ("1 week", 604800)])
def test_cleanup_older_than_is_an_age(given: Any, seconds: int) -> None:
    """0, or a number of minutes, hours, days or weeks."""
    assert read(LANCE | {"cleanup_older_than": given}).cleanup_older_than == seconds


def test_a_value_with_a_control_character_is_refused_at_intake() -> None:
    """A value carrying a control character never reaches a filter; a quote does, as a literal."""
    config = read(LANCE)
    assert config.problem_with(user("42\n")) is not None
    assert config.problem_with(user("o'brien")) is None
    assert config.problem_with(Subject({"email": ("a\x00@x",)})) is None  # not a where type of this system


@pytest.mark.parametrize(("backend", "present", "absent"), [("qdrant", "qdrant_client", "lancedb"),
                                                           ("lancedb", "lancedb", "qdrant_client")])
def test_only_the_named_backends_library_is_imported(tmp_path: Path, backend: str, present: str, absent: str) -> None:
    """A Qdrant system never loads lancedb, nor a LanceDB system qdrant_client."""
    raw = QDRANT | {"path": str(tmp_path / "q")} if backend == "qdrant" else LANCE | {"uri": str(tmp_path / "l")}
    script = (
        "import sys\n"
        "from connectors.base import ConfigReader, Subject\n"
        "from connectors.vector.config import VectorConfig\n"
        "from connectors.vector.connector import VectorConnector\n"
        f"config = VectorConfig.read(ConfigReader('erasure.toml', 'system', {raw!r}, frozenset({{'user_id'}})))\n"
        "with VectorConnector(config) as c:\n"
        "    try:\n"
        "        c.verify(Subject({'user_id': ('42',)}))\n"
        "    except Exception:\n"
        "        pass  # no table there: only the imports matter\n"
        f"print({present!r} in sys.modules, {absent!r} in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["True", "False"]
