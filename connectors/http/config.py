"""The `http` kind's configuration: the call that erases (URL and body templates, method, headers),
the secret that signs every call, its time limits, and the GET that verifies::

    [[systems]]
    name = "billing"
    kind = "http"
    url = "https://billing.internal/v1/users/{user_id}"
    method = "DELETE"
    headers = { Authorization = { env = "BILLING_TOKEN", prefix = "Bearer " }, Accept = "application/json" }
    secret_env = "BILLING_SIGNING_SECRET"
    timeout_seconds = 30
    async_timeout_seconds = 300
    verify_url = "https://billing.internal/v1/users/{user_id}/records"

A URL's scheme, host and port are literal: a placeholder may stand only after the first `/` or `?`
that follows the host, and a value is percent-encoded where it goes (`/` and `?` included), so it
can neither pick the host nor reach another path. A `body` is JSON whose string values may be a
whole placeholder (`"{user_id}"`), replaced by the value as a JSON string, never spliced into text.
Secrets (the signing secret, a token header) come from environment variables the file names, read when
a call is made, so only the workers that erase the system need them.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import quote, urlsplit

from connectors.base import ConfigReader, EnvSecret, Subject, SystemConfig
from connectors.errors import PermanentError

METHODS = ("DELETE", "POST", "PUT", "PATCH")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
SECRET_HEADER = re.compile(r"auth|cookie|key|token|secret|pass|session|credential|signature", re.IGNORECASE)
SET_BY_CONNECTOR = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection",
                              "idempotency-key", "erasure-signature"})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class UrlTemplate:
    """A URL with `{identifier_type}` placeholders after its literal scheme, host and port."""

    text: str
    parts: tuple[tuple[str, str | None], ...]
    origin: tuple[str, str, int]  # scheme, host, port: what no value can change

    @property
    def fields(self) -> frozenset[str]:
        """The identifier types named by the placeholders."""
        return frozenset(f for _, f in self.parts if f)

    def render(self, binding: Mapping[str, str]) -> str:
        """The URL with each value percent-encoded into its place (`/`, `?`, `#`, `%` included)."""
        return "".join(lit + (quote(binding[f], safe="") if f else "") for lit, f in self.parts)


@dataclass(frozen=True)
class Header:
    """A header sent on every call: a literal value, or a prefix and the secret read when sending."""

    name: str
    text: str  # the literal value, or the prefix put before the secret
    secret: EnvSecret | None = None

    def value(self) -> str:
        """The value as sent, the secret read from its variable now (PermanentError naming it if unset)."""
        if self.secret is None:
            return self.text
        value = self.text + self.secret.reveal()
        if not value.isascii() or not value.isprintable():
            raise PermanentError(f"header {self.name}: the environment variable {self.secret.name} must hold "
                                 "printable ASCII, on one line")
        return value


def origin(url: str) -> tuple[str, str, int] | None:
    """The scheme, host and port a URL reaches (None if it is no http(s) URL)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


@dataclass(frozen=True)
class HttpConfig(SystemConfig):
    """A service erased by one signed HTTP call per subject, and optionally verified by a GET."""

    url: UrlTemplate | None = None
    method: str = "DELETE"
    body: str | None = None  # the JSON template, placeholders kept as whole string values
    body_fields: frozenset[str] = frozenset()
    headers: tuple[Header, ...] = ()
    secret: EnvSecret | None = None  # the variable holding the signing secret
    timeout_seconds: float = 30.0
    async_timeout_seconds: float = 300.0
    verify_url: UrlTemplate | None = None

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "http"`."""
        reader.only("name", "kind", "url", "method", "body", "headers", "secret_env", "timeout_seconds",
                    "async_timeout_seconds", "verify_url")
        url = _url(reader, "url")
        body, body_fields = _body(reader)
        if not url.fields and not body_fields:
            raise reader.error("url", f"{url.text!r} and the body name no identifier: every subject would get "
                                      "the same call")
        verify_url = _url(reader, "verify_url") if "verify_url" in reader.raw else None
        if verify_url is not None and not verify_url.fields:
            raise reader.error("verify_url", f"{verify_url.text!r} names no identifier: it cannot tell one "
                                             "subject's data from another's")
        method = reader.text("method", "DELETE").upper()
        if method not in METHODS:
            raise reader.error("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
        return cls(
            name=reader.text("name"),
            kind="http",
            url=url,
            method=method,
            body=body,
            body_fields=body_fields,
            headers=_headers(reader),
            secret=reader.secret("secret_env"),
            timeout_seconds=_positive(reader, "timeout_seconds", 30.0),
            async_timeout_seconds=_positive(reader, "async_timeout_seconds", 300.0),
            verify_url=verify_url,
        )

    @property
    def identifier_types(self) -> frozenset[str]:
        """Every type named by the URL, the body or the verify URL."""
        verified = self.verify_url.fields if self.verify_url else frozenset()
        return (self.url.fields if self.url else frozenset()) | self.body_fields | verified

    @property
    def call_fields(self) -> frozenset[str]:
        """The types one erasing call is made for, one call per combination of their values."""
        return (self.url.fields if self.url else frozenset()) | self.body_fields

    def problem_with(self, subject: Subject) -> str | None:
        """Refuse a value that a URL would read as a path step (`.` or `..`) instead of a name."""
        in_urls = frozenset().union(*(u.fields for u in (self.url, self.verify_url) if u))
        for id_type in sorted(in_urls):
            if any(value in (".", "..") for value in subject.values(id_type)):
                return f"a {id_type} of '.' or '..' cannot be put in a URL"
        return None

    def signing_secret(self) -> bytes:
        """The secret that signs every call, read from its variable now (PermanentError naming it if unset)."""
        if self.secret is None:
            raise PermanentError(f"http system {self.name!r}: no secret_env")
        return self.secret.reveal().encode()

    def render_body(self, binding: Mapping[str, str]) -> bytes:
        """The body as sent: the template with each placeholder replaced by its value as a JSON string."""
        if self.body is None:
            return b""
        return json.dumps(_fill(json.loads(self.body), binding), separators=(",", ":"), ensure_ascii=False).encode()


def _fill(node: Any, binding: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        found = PLACEHOLDER.fullmatch(node)
        return binding[found[1]] if found else node
    if isinstance(node, list):
        return [_fill(item, binding) for item in node]
    if isinstance(node, dict):
        return {key: _fill(value, binding) for key, value in node.items()}
    return node


def _url(reader: ConfigReader, key: str) -> UrlTemplate:
    """A URL template whose scheme, host and port no value can change."""
    text = reader.text(key)
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise reader.error(key, f"bad template {text!r}: {exc}") from exc
    parts: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (spec or conversion or not name.isidentifier()):
            raise reader.error(key, f"placeholders are plain names like {{user_id}}, not {text!r}")
        parts.append((literal, reader.identifier(key, name) if name is not None else None))
    head = "".join(_leading_literals(parts))
    reached = origin(head)
    if "#" in text or reached is None or "@" in urlsplit(head).netloc:
        raise reader.error(key, f"must be an http:// or https:// URL with a literal host, no user:password@ "
                                f"and no #fragment, got {text!r}")
    after_host = head[len(urlsplit(head).scheme) + 3 + len(urlsplit(head).netloc):]
    if len(parts) > 1 or parts[0][1] is not None:
        if not after_host or after_host[0] not in "/?":
            raise reader.error(key, f"{text!r}: the host is literal: a placeholder may only follow the first "
                                    "'/' or '?' after it")
    return UrlTemplate(text, tuple(parts), reached)


def _leading_literals(parts: list[tuple[str, str | None]]) -> Iterator[str]:
    for literal, name in parts:
        yield literal
        if name is not None:
            return


def _body(reader: ConfigReader) -> tuple[str | None, frozenset[str]]:
    """The JSON body template, checked: TOML values JSON can carry, placeholders only as whole strings."""
    if "body" not in reader.raw:
        return None, frozenset()
    body = reader.raw["body"]
    if not isinstance(body, dict | list):
        raise reader.error("body", f"must be a table or an array (sent as JSON), got {type(body).__name__}")
    fields: set[str] = set()

    def check(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if "{" in k or "}" in k:
                    raise reader.error(where, f"a key cannot hold a placeholder or a brace: {k!r}")
                check(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                check(item, f"{where}[{i}]")
        elif isinstance(node, str):
            found = PLACEHOLDER.fullmatch(node)
            if found:
                fields.add(reader.identifier(where, found[1]))
            elif "{" in node or "}" in node:
                raise reader.error(where, f"a placeholder is a whole string value like \"{{user_id}}\", "
                                          f"never part of one: {node!r}")
        elif isinstance(node, bool | int) or isinstance(node, float) and math.isfinite(node):
            pass
        else:
            raise reader.error(where, f"JSON cannot carry a {type(node).__name__}")

    check(body, "body")
    return json.dumps(body, separators=(",", ":")), frozenset(fields)


def _headers(reader: ConfigReader) -> tuple[Header, ...]:
    """Headers sent on every call: a literal for plain ones, `{ env = "NAME" }` for anything secret
    (the variable checked for a name now, read when sending)."""
    headers = []
    for name, value in reader.optional("headers", dict, {}).items():
        where = f"headers.{name}"
        if not HEADER_NAME.fullmatch(name):
            raise reader.error(where, "is not a header name")
        if name.lower() in SET_BY_CONNECTOR:
            raise reader.error(where, "is set by the connector itself")
        if isinstance(value, str):
            if SECRET_HEADER.search(name):
                raise reader.error(where, f'may hold a secret: name its environment variable, '
                                          f'{name} = {{ env = "VARIABLE" }}, never the value')
            header = Header(name, value)
        else:
            table = reader.child(where, value)
            table.only("env", "prefix")
            header = Header(name, table.optional("prefix", str, ""), table.secret("env"))
        if not header.text.isascii() or not header.text.isprintable():
            raise reader.error(where, "the value must be printable ASCII, on one line")
        headers.append(header)
    return tuple(headers)


def _positive(reader: ConfigReader, key: str, default: float) -> float:
    value = reader.raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise reader.error(key, f"must be a number of seconds above 0, got {value!r}")
    return float(value)
