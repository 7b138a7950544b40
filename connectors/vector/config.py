"""The `vector` kind's configuration: which store (LanceDB or Qdrant), where it is, the table or
collection, which metadata fields identify a subject, and how long LanceDB keeps old versions.

LanceDB (embedded: a folder, or an S3 prefix)::

    [[systems]]
    name    = "embeddings"
    kind    = "vector"
    backend = "lancedb"
    uri     = "/data/lancedb"                 # or "s3://BUCKET/PREFIX"
    table   = "documents"
    where   = { user_id = "user_id" }         # metadata column = identifier type, ANDed
    cleanup_older_than = 0                    # or "7 days": erased vectors stay in old versions that long

Qdrant (a server, or its local mode on a folder)::

    [[systems]]
    name        = "search"
    kind        = "vector"
    backend     = "qdrant"
    url         = "https://qdrant.internal:6333"   # or path = "/data/qdrant" (local mode)
    api_key_env = "QDRANT_API_KEY"                 # optional, servers only; read when erasing
    collection  = "documents"
    where       = { user_id = "user_id" }          # payload field = identifier type, ANDed

`where` and `match` read as for snapshot systems (connectors/snapshot/config.py), with plain field
names only; the matching itself is connectors/snapshot/match.py's, so a row is a subject's here
exactly when it would be in a snapshot."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import Self
from urllib.parse import urlsplit

from connectors.base import ConfigReader, EnvSecret, Subject, SystemConfig
from connectors.s3.config import _endpoint_url, _region
from connectors.snapshot.config import BUCKET
from connectors.snapshot.keyed import Keyed, folds_of

BACKENDS = ("lancedb", "qdrant")
FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a where field: a plain name
TABLE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # what LanceDB and Qdrant accept as a name
AGE = re.compile(r"\s*([0-9]{1,4})\s+(minute|hour|day|week)s?\s*")
SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 604800}
KEYS = {  # the keys each backend takes, beside name, kind, backend, where, match
    "lancedb": ("uri", "table", "cleanup_older_than", "endpoint_url", "region"),
    "qdrant": ("path", "url", "collection", "api_key_env"),
}


@dataclass(frozen=True)
class VectorConfig(Keyed, SystemConfig):
    """A vector store's table or collection and the metadata fields that say whose a vector is."""

    training: bool = field(default=True, kw_only=True)  # embeddings are what models are built from
    backend: str = "lancedb"
    uri: str = ""  # lancedb: a folder or s3://BUCKET/PREFIX
    table: str = ""  # lancedb: the table; qdrant: the collection
    path: str | None = None  # qdrant local mode: its folder
    url: str | None = None  # qdrant server
    api_key: EnvSecret | None = None  # qdrant server: the variable api_key_env names, read when erasing
    cleanup_older_than: int = 0  # lancedb: seconds an old version is kept before cleanup removes it
    endpoint_url: str | None = None  # lancedb on s3://: an S3-compatible store
    region: str | None = None

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "vector"`."""
        reader.only("name", "kind", "backend", "where", "match", *KEYS["lancedb"], *KEYS["qdrant"])
        backend = reader.text("backend")
        if backend not in BACKENDS:
            raise reader.error("backend", f'must be "lancedb" or "qdrant", got {backend!r}')
        other = "qdrant" if backend == "lancedb" else "lancedb"
        for key in KEYS[other]:
            if key in reader.raw:
                raise reader.error(key, f'is for backend = "{other}", not "{backend}"')
        where = _where(reader)
        exact = reader.exact_columns(column for column, _ in where)
        base = cls(name=reader.text("name"), kind="vector", backend=backend, where=where, exact=exact,
                   folds=folds_of(reader, where, exact))
        if backend == "qdrant":
            path, url, api_key = _qdrant(reader)
            return replace(base, table=_name(reader, "collection"), path=path, url=url, api_key=api_key)
        uri = _uri(reader)
        if not uri.startswith("s3://") and ("endpoint_url" in reader.raw or "region" in reader.raw):
            raise reader.error("endpoint_url" if "endpoint_url" in reader.raw else "region",
                               "is for an s3:// uri only")
        return replace(base, uri=uri, table=_name(reader, "table"), cleanup_older_than=_age(reader),
                       endpoint_url=_endpoint_url(reader), region=_region(reader))

    @property
    def target(self) -> str:
        """The table or collection, as evidence and snapshot hits name it."""
        return self.table

    def problem_with(self, subject: Subject) -> str | None:
        """Refuse control characters in a value a filter would carry."""
        for id_type in sorted(self.identifier_types):
            if any(unicodedata.category(c) == "Cc" for value in subject.values(id_type) for c in value):
                return f"a {id_type} containing a control character cannot be matched in a vector store"
        return None


def _where(reader: ConfigReader) -> tuple[tuple[str, str], ...]:
    """`where`: plain field names and the identifier types they hold."""
    where = reader.require("where", dict)
    if not where:
        raise reader.error("where", "names no field: it would match every vector")
    for name in where:
        if not FIELD.fullmatch(name):
            raise reader.error(f"where.{name}", "a field is a plain name (letters, digits, _)")
    return tuple((name, reader.identifier(f"where.{name}", t)) for name, t in where.items())


def _name(reader: ConfigReader, key: str) -> str:
    name = reader.text(key)
    if not TABLE.fullmatch(name):
        raise reader.error(key, f"{name!r} is not a plain name (letters, digits, _ . -)")
    return name


def _uri(reader: ConfigReader) -> str:
    uri = reader.text("uri")
    if uri.startswith("s3://"):
        bucket = uri.removeprefix("s3://").partition("/")[0]
        if not BUCKET.fullmatch(bucket) or ".." in bucket:
            raise reader.error("uri", f"{bucket!r} is not an S3 bucket name")
    elif "://" in uri:
        raise reader.error("uri", "must be a local folder or s3://BUCKET/PREFIX")
    return uri


def _age(reader: ConfigReader) -> int:
    """`cleanup_older_than`: 0, or "N minutes|hours|days|weeks"; in seconds."""
    value = reader.raw.get("cleanup_older_than", 0)
    if value == 0 and not isinstance(value, bool):
        return 0
    match = AGE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise reader.error("cleanup_older_than", f'0, or an age like "7 days" or "12 hours", not {value!r}')
    return int(match[1]) * SECONDS[match[2]]


def _qdrant(reader: ConfigReader) -> tuple[str | None, str | None, EnvSecret | None]:
    """Where the Qdrant collection is: `path` (local mode), or `url` (a server) and its API key's variable."""
    if ("path" in reader.raw) == ("url" in reader.raw):
        raise reader.error("url", "give either url (a Qdrant server) or path (local mode), not both or neither")
    if "path" in reader.raw:
        if "api_key_env" in reader.raw:
            raise reader.error("api_key_env", "is for a server (url), not local mode")
        return reader.text("path"), None, None
    url = reader.text("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.error("url", f"must be an http:// or https:// URL, got {url!r}")
    return None, url, reader.secret("api_key_env") if "api_key_env" in reader.raw else None
