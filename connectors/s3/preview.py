"""The s3 kind's look without acting: the object versions and delete markers erase() would delete, per
template, found by the erase's own listing (`S3Connector._versions`: every version under a rendered
prefix, exact keys only at a key's template); and, for an export (Art. 15 access), the list of those
objects with their sizes and dates, and with `contents` each version's body as stored.

A version under an S3 Object Lock is counted here as erase() lists it; erase() then keeps it and
reports the system exempt, so its items are fewer by those versions. Evidence and counts name
templates, never a key holding a value; the export, which is for the subject, holds the keys."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from connectors.base import Part, Preview, Subject
from connectors.records import jsonable
from connectors.s3.config import S3Config

CHUNK = 1 << 20  # bytes read from an object's body at a time
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class S3(Protocol):
    """The s3 connector as read here (connector.py imports this module, never the reverse)."""

    config: S3Config

    @property
    def client(self) -> Any:
        """The boto3 client."""

    def _targets(self, subject: Subject) -> list[Any]: ...

    def _versions(self, subject: Subject) -> list[Any]: ...

    def _boundary(self, action: str) -> AbstractContextManager[None]: ...


def look(s3: S3, subject: Subject) -> Preview:
    """Versions and delete markers per template (every template, 0 where none), as erase() lists them."""
    with s3._boundary("preview"):
        versions = s3._versions(subject)
    templates = {t.text: {"versions": 0, "delete_markers": 0} for t in (*s3.config.prefixes, *s3.config.keys)}
    for version in versions:
        templates[version.target.template.text]["delete_markers" if version.delete_marker else "versions"] += 1
    return Preview(looked=True, items=len(versions), counts={"bucket": s3.config.bucket, "templates": templates})


def read(s3: S3, subject: Subject, contents: bool) -> Iterator[Part]:
    """`objects.jsonl`: each version and delete marker erase() would delete, with its key, version,
    size and date; with `contents`, each version's body as `objects/N-NAME`, the list naming it."""
    with s3._boundary("export"):
        versions = s3._versions(subject)
        listed = _listing(s3, subject) if versions else {}
    entries, bodies = [], []
    for n, version in enumerate(versions, 1):
        found = listed.get((version.key, version.version_id), {})
        name = None
        if contents and not version.delete_marker:
            name = f"objects/{n:05d}-{UNSAFE.sub('_', version.key.rsplit('/', 1)[-1])[:100] or 'object'}"
            bodies.append((name, version))
        entries.append({"key": version.key, "version_id": version.version_id, "delete_marker": version.delete_marker,
                        "is_latest": found.get("IsLatest"), "size": found.get("Size"),
                        "last_modified": jsonable(found.get("LastModified")), "template": version.target.template.text,
                        "part": name})
    yield Part("objects.jsonl", records=entries)
    for name, version in bodies:
        yield Part(name, content=_body(s3, version.key, version.version_id))


def _listing(s3: S3, subject: Subject) -> dict[tuple[str, str], dict[str, Any]]:
    """The listing's entries at the subject's targets, by key and version, for their sizes and dates."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    paginator = s3.client.get_paginator("list_object_versions")
    for target in s3._targets(subject):
        for page in paginator.paginate(Bucket=s3.config.bucket, Prefix=target.rendered):
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                found.setdefault((entry["Key"], entry.get("VersionId") or "null"), entry)
    return found


def _body(s3: S3, key: str, version_id: str) -> Iterator[bytes]:
    """One version's body, in chunks."""
    with s3._boundary("export"):
        answer = s3.client.get_object(Bucket=s3.config.bucket, Key=key, VersionId=version_id)
        yield from answer["Body"].iter_chunks(CHUNK)
