"""The `s3` kind: deletes every version and delete marker under a subject's prefixes and
at a subject's exact keys, in one bucket of S3 or an S3-compatible store."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from connectors.base import ConfigReader, Connector, Outcome, Subject, SystemConfig, Template, retry_blips
from worker.errors import ConnectorError, PermanentError, TransientError

BATCH = 1000  # the most keys one DeleteObjects call accepts
DELETE_ATTEMPTS = 3
PERMANENT_CODES = frozenset(
    {"NoSuchBucket", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"}
)
ALREADY_GONE = frozenset({"NoSuchKey", "NoSuchVersion"})
UNREACHABLE = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError)


@dataclass(frozen=True)
class S3Config(SystemConfig):
    """An S3 bucket and the key prefixes and exact keys that hold a subject's objects."""

    bucket: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    prefixes: tuple[Template, ...] = ()
    keys: tuple[Template, ...] = ()

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "s3"`."""
        reader.only("name", "kind", "bucket", "endpoint_url", "region", "prefixes", "keys")
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
            endpoint_url=reader.text("endpoint_url") if "endpoint_url" in reader.raw else None,
            region=reader.text("region") if "region" in reader.raw else None,
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


@dataclass(frozen=True)
class _Target:
    """One rendered prefix or exact key, with the template it came from."""

    template: Template
    rendered: str
    exact: bool


@dataclass(frozen=True)
class _Version:
    """One object version or delete marker found for a target."""

    target: _Target
    key: str
    version_id: str
    delete_marker: bool

    def evidence(self, subject: Subject) -> dict[str, Any]:
        """This version as proof, its key written as the template (no identifier value)."""
        if self.target.exact:
            key = self.target.template.text
        else:
            key = self.target.template.text + _redacted(self.key[len(self.target.rendered) :], subject)
        return {
            "template": self.target.template.text,
            "key": key,
            "version_id": self.version_id,
            "delete_marker": self.delete_marker,
        }


def _redacted(text: str, subject: Subject) -> str:
    """The text with any identifier value written as its `{type}` placeholder instead."""
    pairs = sorted(((v, t) for t, vs in subject.identifiers.items() for v in vs), key=lambda p: -len(p[0]))
    for value, id_type in pairs:
        if value:
            text = text.replace(value, "{" + id_type + "}")
    return text


class S3Connector(Connector):
    """Deletes every version and delete marker of a subject's objects in one bucket."""

    kind = "s3"
    config_class = S3Config
    config: S3Config

    def __init__(self, config: S3Config) -> None:
        super().__init__(config)
        self._s3: Any = None

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use."""
        if self._s3 is None:
            self._s3 = boto3.session.Session().client(
                "s3",
                endpoint_url=self.config.endpoint_url,
                region_name=self.config.region,
                config=Config(retries={"mode": "standard", "max_attempts": 3}),
            )
        return self._s3

    def close(self) -> None:
        """Close the client's connections."""
        if self._s3 is not None:
            self._s3.close()
            self._s3 = None

    def erase(self, subject: Subject) -> Outcome:
        """Delete every version and delete marker under the subject's prefixes and keys."""
        return retry_blips(self._erase)(subject)

    def verify(self, subject: Subject) -> int:
        """How many versions and delete markers are still there."""
        with self._boundary("verify"):
            return len(self._versions(subject))

    def _erase(self, subject: Subject) -> Outcome:
        with self._boundary("erase"):
            versions = self._versions(subject)
            gone: set[tuple[str, str]] = set()
            for start in range(0, len(versions), BATCH):
                gone |= self._delete(versions[start : start + BATCH])
        erased = [v for v in versions if (v.key, v.version_id) not in gone]
        objects = [v.evidence(subject) for v in erased]
        return Outcome(len(erased), {"bucket": self.config.bucket, "objects": objects})

    def _targets(self, subject: Subject) -> list[_Target]:
        """Every rendered prefix and exact key for the subject."""
        return [
            _Target(template, rendered, exact)
            for templates, exact in ((self.config.prefixes, False), (self.config.keys, True))
            for template in templates
            for rendered in template.render(subject)
        ]

    def _versions(self, subject: Subject) -> list[_Version]:
        """Every version and delete marker at the subject's targets, each listed once."""
        found: dict[tuple[str, str], _Version] = {}
        paginator = self.client.get_paginator("list_object_versions")
        for target in self._targets(subject):
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=target.rendered):
                entries = [(e, False) for e in page.get("Versions", [])]
                entries += [(e, True) for e in page.get("DeleteMarkers", [])]
                for entry, marker in entries:
                    if target.exact and entry["Key"] != target.rendered:
                        continue  # `42.zip` must never take `42.zip.bak`
                    version = _Version(target, entry["Key"], entry.get("VersionId") or "null", marker)
                    found.setdefault((version.key, version.version_id), version)
        return list(found.values())

    def _delete(self, batch: list[_Version]) -> set[tuple[str, str]]:
        """Delete one batch, retrying keys that were throttled; return those already gone."""
        gone: set[tuple[str, str]] = set()
        pending = batch
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            response = self.client.delete_objects(
                Bucket=self.config.bucket,
                Delete={
                    "Objects": [{"Key": v.key, "VersionId": v.version_id} for v in pending],
                    "Quiet": True,
                },
            )
            codes = {
                (e.get("Key"), e.get("VersionId")): e.get("Code", "") for e in response.get("Errors", [])
            }
            failed = []
            for version in pending:
                code = codes.get((version.key, version.version_id), codes.get((version.key, None)))
                if code in ALREADY_GONE:
                    gone.add((version.key, version.version_id))
                elif code is not None:
                    failed.append((version, code))
            if not failed:
                return gone
            version, code = failed[0]
            where = f"s3 system {self.config.name!r}: deleting under {version.target.template.text!r}"
            if code not in TRANSIENT_CODES:
                raise PermanentError(f"{where} failed: {code}")
            if attempt == DELETE_ATTEMPTS:
                raise TransientError(f"{where} still failing after {attempt} tries: {code}")
            time.sleep(0.2 * attempt)
            pending = [v for v, _ in failed]
        return gone

    @contextmanager
    def _boundary(self, action: str) -> Iterator[None]:
        """Translate botocore's errors into the project's, naming the system, never a key."""
        where = f"s3 system {self.config.name!r} ({action}, bucket {self.config.bucket!r})"
        try:
            yield
        except ClientError as exc:
            raise _client_error(where, exc) from exc
        except UNREACHABLE as exc:
            raise TransientError(f"{where}: endpoint unreachable ({type(exc).__name__})") from exc
        except NoCredentialsError as exc:
            raise PermanentError(f"{where}: no AWS credentials found") from exc
        except BotoCoreError as exc:
            raise PermanentError(f"{where}: {type(exc).__name__}") from exc


def _client_error(where: str, exc: ClientError) -> ConnectorError:
    """The project's error for an S3 error response, by its code and HTTP status."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = f"{where}: {code} (HTTP {status})"
    if code in {"InvalidRequest", "AccessDenied"} and "mfa" in str(error.get("Message", "")).lower():
        return PermanentError(f"{where}: the bucket requires MFA to delete versions ({code})")
    if code in PERMANENT_CODES:
        return PermanentError(message)
    if code in TRANSIENT_CODES or status >= 500:
        return TransientError(message)
    return PermanentError(message)
