"""The `s3` kind's configuration: the bucket, the key templates, and how to reach the store.

MinIO (path-style addressing; credentials from the `minio` profile of ~/.aws/credentials)::

    [[systems]]
    name = "uploads"
    kind = "s3"
    bucket = "user-uploads"
    endpoint_url = "http://minio.internal:9000"
    region = "us-east-1"
    addressing_style = "path"
    profile = "minio"
    request_checksum_calculation = "when_required"
    response_checksum_validation = "when_required"
    prefixes = ["avatars/{user_id}/"]
    keys = ["exports/{user_id}.zip"]

Ceph RGW (region is the zonegroup's name; credentials from the standard chain)::

    [[systems]]
    name = "archive"
    kind = "s3"
    bucket = "user-archive"
    endpoint_url = "https://rgw.internal:8443"
    region = "default"
    addressing_style = "path"
    request_checksum_calculation = "when_required"
    response_checksum_validation = "when_required"
    connect_timeout = 5
    read_timeout = 120
    prefixes = ["archive/{user_id}/"]

`request_checksum_calculation = "when_required"` also puts a Content-MD5 header on
DeleteObjects, which boto3 >= 1.36 no longer sends and which older MinIO and Ceph releases
demand (MissingContentMD5).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ProfileNotFound,
    ProxyConnectionError,
)

from connectors.base import ConfigReader, Subject, SystemConfig, Template
from worker.errors import ConnectorError, PermanentError, TransientError

ADDRESSING_STYLES = ("path", "virtual", "auto")
CHECKSUM_MODES = ("when_supported", "when_required")
REGION = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class S3Config(SystemConfig):
    """An S3 bucket, the key prefixes and exact keys that hold a subject's objects, and how to reach it."""

    bucket: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "auto"
    profile: str | None = None
    request_checksum_calculation: str | None = None
    response_checksum_validation: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    bypass_governance: bool = False
    legal_hold_recheck_hours: float = 24.0
    prefixes: tuple[Template, ...] = ()
    keys: tuple[Template, ...] = ()

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "s3"`."""
        reader.only(*cls.__dataclass_fields__)  # the fields are the table's keys
        prefixes = tuple(
            reader.template(f"prefixes[{i}]", text)
            for i, text in enumerate(reader.optional("prefixes", list, []))
        )
        for i, prefix in enumerate(prefixes):
            if not prefix.text.endswith("/"):
                raise reader.error(
                    f"prefixes[{i}]", f"{prefix.text!r} must end with '/' or it matches neighbours"
                )
        keys = tuple(
            reader.template(f"keys[{i}]", text) for i, text in enumerate(reader.optional("keys", list, []))
        )
        if not prefixes and not keys:
            raise reader.error("prefixes", "neither prefixes nor keys is given: nothing to erase")
        return cls(
            name=reader.text("name"),
            kind="s3",
            bucket=reader.text("bucket"),
            endpoint_url=_endpoint_url(reader),
            region=_region(reader),
            addressing_style=_choice(reader, "addressing_style", ADDRESSING_STYLES) or "auto",
            profile=reader.text("profile") if "profile" in reader.raw else None,
            request_checksum_calculation=_choice(reader, "request_checksum_calculation", CHECKSUM_MODES),
            response_checksum_validation=_choice(reader, "response_checksum_validation", CHECKSUM_MODES),
            connect_timeout=_positive(reader, "connect_timeout", 10.0),
            read_timeout=_positive(reader, "read_timeout", 60.0),
            bypass_governance=reader.optional("bypass_governance", bool, False),
            legal_hold_recheck_hours=_positive(reader, "legal_hold_recheck_hours", 24.0),
            prefixes=prefixes,
            keys=keys,
        )

    @property
    def identifier_types(self) -> frozenset[str]:
        """Every type named by a prefix or key template."""
        return frozenset(f for t in self.prefixes + self.keys for f in t.fields)

    def problem_with(self, subject: Subject) -> str | None:
        """Refuse values that, inserted literally, could reach into another person's keys."""
        for id_type in sorted(self.identifier_types):
            for value in subject.values(id_type):
                if "/" in value or any(unicodedata.category(c) == "Cc" for c in value):
                    return f"a {id_type} containing '/' or a control character cannot be used in S3 keys"
        return None

    def botocore_config(self) -> Config:
        """The client settings this system asks for: retries, addressing, timeouts, checksums."""
        return botocore_config(self, self.connect_timeout, self.read_timeout)


class Reach(Protocol):
    """How to reach a store: the settings an `s3` system and an `s3://` snapshot location share."""

    @property
    def endpoint_url(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def profile(self) -> str | None: ...
    @property
    def addressing_style(self) -> str: ...
    @property
    def request_checksum_calculation(self) -> str | None: ...
    @property
    def response_checksum_validation(self) -> str | None: ...


def botocore_config(reach: Reach, connect_timeout: float = 10.0, read_timeout: float = 60.0) -> Config:
    """The client settings a system asks for: retries, addressing, timeouts, checksums."""
    checksums = {
        key: value
        for key, value in (
            ("request_checksum_calculation", reach.request_checksum_calculation),
            ("response_checksum_validation", reach.response_checksum_validation),
        )
        if value is not None
    }
    return Config(
        retries={"mode": "standard", "max_attempts": 3},
        s3={"addressing_style": reach.addressing_style},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        **checksums,
    )


def make_client(reach: Reach, connect_timeout: float = 10.0, read_timeout: float = 60.0) -> Any:
    """A boto3 S3 client for the settings (an unknown profile fails here, with ProfileNotFound)."""
    session = boto3.session.Session(profile_name=reach.profile)
    config = botocore_config(reach, connect_timeout, read_timeout)
    client = session.client("s3", endpoint_url=reach.endpoint_url, region_name=reach.region, config=config)
    if reach.request_checksum_calculation == "when_required":
        client.meta.events.register("before-sign.s3.DeleteObjects", add_content_md5)
    return client


UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError, HTTPClientError)


@contextmanager
def client_errors(
    where: str, reach: Reach, translate: Callable[[str, ClientError], ConnectorError]
) -> Iterator[None]:
    """Translate botocore's errors into the project's: an S3 error answer by `translate`, the
    rest by kind (an unreachable endpoint may pass; missing credentials or profile will not)."""
    try:
        yield
    except ClientError as exc:
        raise translate(where, exc) from exc
    except UNREACHABLE as exc:
        raise TransientError(f"{where}: endpoint unreachable ({type(exc).__name__})") from exc
    except NoCredentialsError as exc:
        raise PermanentError(f"{where}: no AWS credentials found") from exc
    except ProfileNotFound as exc:
        raise PermanentError(f"{where}: AWS profile {reach.profile!r} not found") from exc
    except BotoCoreError as exc:
        raise PermanentError(f"{where}: {type(exc).__name__}") from exc


def add_content_md5(request: Any, **_: Any) -> None:
    """Content-MD5 on a DeleteObjects request, for stores that still demand it."""
    body = request.body
    if "Content-MD5" in request.headers or not isinstance(body, bytes | str):
        return
    digest = hashlib.md5(body.encode() if isinstance(body, str) else body, usedforsecurity=False).digest()
    request.headers["Content-MD5"] = base64.b64encode(digest).decode()


def _endpoint_url(reader: ConfigReader) -> str | None:
    if "endpoint_url" not in reader.raw:
        return None
    url = reader.text("endpoint_url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.error("endpoint_url", f"must be an http:// or https:// URL, got {url!r}")
    return url


def _region(reader: ConfigReader) -> str | None:
    if "region" not in reader.raw:
        return None
    region = reader.text("region")
    if not REGION.fullmatch(region):
        raise reader.error("region", f"must be a region name such as 'us-east-1', got {region!r}")
    return region


def _choice(reader: ConfigReader, key: str, choices: tuple[str, ...]) -> str | None:
    if key not in reader.raw:
        return None
    value = reader.require(key, str)
    if value not in choices:
        raise reader.error(key, f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _positive(reader: ConfigReader, key: str, default: float) -> float:
    value = reader.raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise reader.error(key, f"must be a number above 0, got {value!r}")
    return float(value)
