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
demand (MissingContentMD5). The client is made, and its errors translated, in connectors/aws.py.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit

from botocore.config import Config

from connectors.aws import botocore_config
from connectors.base import ConfigReader, Subject, SystemConfig, Template
from connectors.s3.overlap import collide, segments

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
        _refuse_overlaps(reader, prefixes, keys)
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


def _refuse_overlaps(reader: ConfigReader, prefixes: tuple[Template, ...], keys: tuple[Template, ...]) -> None:
    """Refuse templates that could render one key for two people (connectors/s3/overlap.py)."""
    shaped = []
    for name, templates, prefix in (("prefixes", prefixes, True), ("keys", keys, False)):
        for i, template in enumerate(templates):
            found = segments(template, prefix)
            if found is None:
                raise reader.error(f"{name}[{i}]", f"{template.text!r} has two placeholders in one path segment, "
                                                   "which cannot tell where one value ends: put a '/' between them")
            shaped.append((f"{name}[{i}]", template, found, prefix))
    for later, (key, template, found, prefix) in enumerate(shaped):
        for other_key, other, other_found, other_prefix in shaped[:later]:
            if collide(found, prefix, other_found, other_prefix) or collide(other_found, other_prefix, found, prefix):
                raise reader.error(key, f"{template.text!r} and {other_key} {other.text!r} could render one key "
                                        "for two people (a value equal to the other's literal text, or written "
                                        "around it): give each template a folder of its own")


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
