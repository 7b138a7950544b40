"""The `s3` kind: deletes every version and delete marker under a subject's prefixes and
at a subject's exact keys, in one bucket of S3 or an S3-compatible store.

A version under an Object Lock (COMPLIANCE or GOVERNANCE retention, or a legal hold) is kept
and reported as an exemption with the date to try again; everything else is deleted.
The credentials need s3:ListBucketVersions, s3:DeleteObject, s3:DeleteObjectVersion, and, to
learn why a version was refused, s3:GetObjectVersion, s3:GetObjectRetention and
s3:GetObjectLegalHold (plus s3:BypassGovernanceRetention with `bypass_governance = true`).

How to reach the bucket (endpoint, region, addressing, profile, checksums) is in
`connectors/s3/config.py`, with MinIO and Ceph examples; which errors are retried is in
`connectors/aws.py`, shared with the snapshot systems on s3:// locations.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from connectors.aws import (
    BATCH,
    GONE_CODES,
    TRANSIENT_CODES,
    entry_error,
    http_status,
    make_client,
    map_botocore_errors,
    translate,
)
from connectors.base import Checked, Connector, Outcome, Part, Patterns, Preview, Subject, Template, retry_blips
from connectors.errors import PermanentError, TransientError
from connectors.s3 import preview, probe
from connectors.s3.config import S3Config

DELETE_ATTEMPTS = 3
NOT_REPORTED = "NotReported"  # DeleteObjects named the version neither deleted nor failed
LOCK_MODES = frozenset({"COMPLIANCE", "GOVERNANCE"})


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

    def templated_key(self, subject: Subject) -> str:
        """The key with the identifier's value written as its placeholder."""
        if self.target.exact:
            return self.target.template.text
        return self.target.template.text + _redacted(self.key[len(self.target.rendered) :], subject)

    def evidence(self, subject: Subject) -> dict[str, Any]:
        """This version as proof, its key written as the template (no identifier value)."""
        return {
            "template": self.target.template.text,
            "key": self.templated_key(subject),
            "version_id": self.version_id,
            "delete_marker": self.delete_marker,
        }


@dataclass(frozen=True)
class _Lock:
    """Why the store kept a version: a retention mode until a date, a legal hold, or both."""

    mode: str | None
    retain_until: datetime | None
    legal_hold: bool

    @property
    def label(self) -> str:
        """'legal hold', 'COMPLIANCE retention', or both joined by 'and'."""
        parts = ["legal hold"] if self.legal_hold else []
        if self.mode:
            parts.append(f"{self.mode} retention")
        return " and ".join(parts)

    def recheck_at(self, hold_recheck: datetime) -> datetime:
        """When deleting may succeed: the retention's end, a legal hold's next look, whichever is later."""
        ends = [end for end in (hold_recheck if self.legal_hold else None, self.retain_until) if end]
        return max(ends)

    def evidence(self) -> dict[str, Any]:
        """The lock as proof."""
        return {"lock": self.label, "retain_until": _iso(self.retain_until) if self.retain_until else None}


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
        """The boto3 S3 client, created on first use (an unknown profile fails here)."""
        if self._s3 is None:
            c = self.config
            self._s3 = make_client(c, c.connect_timeout, c.read_timeout)
        return self._s3

    def close(self) -> None:
        """Close the client's connections."""
        if self._s3 is not None:
            self._s3.close()
            self._s3 = None

    def erase(self, subject: Subject) -> Outcome:
        """Delete every version and delete marker under the subject's prefixes and keys."""
        removed: dict[tuple[str, str], _Version] = {}  # kept across retries: a retry lists only what is left
        return retry_blips(self._erase)(subject, removed)

    def verify(self, subject: Subject) -> int:
        """How many versions and delete markers are still there."""
        with self._boundary("verify"):
            return len(self._versions(subject))

    def _erase(self, subject: Subject, removed: dict[tuple[str, str], _Version]) -> Outcome:
        with self._boundary("erase"):
            versions = self._versions(subject)
            denied: list[_Version] = []
            for start in range(0, len(versions), BATCH):
                denied += self._delete(versions[start : start + BATCH], removed)
            # Asked only for the few versions refused, not for every version beforehand.
            kept = [(version, self._lock_on(version)) for version in denied]
        evidence = {
            "bucket": self.config.bucket,
            "objects": [v.evidence(subject) for v in removed.values()],
            "kept": [v.evidence(subject) | lock.evidence() for v, lock in kept],
        }
        if not kept:
            return Outcome(len(removed), evidence)
        hold_recheck = datetime.now(UTC) + timedelta(hours=self.config.legal_hold_recheck_hours)
        return Outcome(
            len(removed),
            evidence,
            exempt_reason=_exempt_reason(kept, subject),
            recheck_at=min(lock.recheck_at(hold_recheck) for _, lock in kept),
        )

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

    def _delete(self, batch: list[_Version], removed: dict[tuple[str, str], _Version]) -> list[_Version]:
        """Delete one batch, adding what went to `removed`; return the versions refused with AccessDenied.
        Throttled versions are retried; any other refusal fails for good, naming the template."""
        denied: list[_Version] = []
        bypass = {"BypassGovernanceRetention": True} if self.config.bypass_governance else {}
        pending = batch
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            response = self.client.delete_objects(
                Bucket=self.config.bucket,
                Delete={"Objects": [{"Key": v.key, "VersionId": v.version_id} for v in pending], "Quiet": False},
                **bypass,
            )
            retry: list[tuple[_Version, str]] = []
            for version, error in _fates(pending, response):
                if not error:
                    removed[version.key, version.version_id] = version
                    continue
                code, message = error.get("Code") or "Unknown", error.get("Message") or ""
                if code == "AccessDenied" and "mfa" not in message.lower():
                    denied.append(version)  # perhaps an Object Lock: _lock_on tells
                elif code in TRANSIENT_CODES or code == NOT_REPORTED:
                    retry.append((version, code))
                elif code not in GONE_CODES:
                    raise translate(self._deleting(version), entry_error(error))
            if not retry:
                break
            version, code = retry[0]
            if attempt == DELETE_ATTEMPTS:
                raise TransientError(f"{self._deleting(version)}: still failing after {attempt} tries: {code}")
            time.sleep(0.2 * attempt)
            pending = [v for v, _ in retry]
        return denied

    def _lock_on(self, version: _Version) -> _Lock:
        """The Object Lock that kept a refused version; PermanentError when none explains it.

        One HeadObject per refused version: it carries retention and legal hold together
        (GetObjectRetention would take a second call, and moto does not serve it)."""
        where = self._deleting(version)
        if version.delete_marker:
            raise PermanentError(f"{where} failed: AccessDenied on a delete marker, which no lock can hold")
        try:
            head = self.client.head_object(Bucket=self.config.bucket, Key=version.key, VersionId=version.version_id)
        except ClientError as exc:
            status = http_status(exc)
            if status == 404:
                raise TransientError(f"{where}: a refused version vanished; listing again") from exc
            if 400 <= status < 500 and status != 429:
                raise PermanentError(
                    f"{where} failed: AccessDenied, and its object lock cannot be read (HeadObject: HTTP {status})"
                ) from exc
            raise  # 429, 5xx: the boundary tells
        hold = head.get("ObjectLockLegalHoldStatus") == "ON"
        mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
        bypassed = mode == "GOVERNANCE" and self.config.bypass_governance
        if mode not in LOCK_MODES or until is None or bypassed:
            mode, until = None, None
        if not hold and mode is None:
            hint = " (GOVERNANCE bypass refused: is s3:BypassGovernanceRetention granted?)" if bypassed else ""
            raise PermanentError(f"{where} failed: AccessDenied, and no object lock explains it{hint}")
        return _Lock(mode, _utc(until) if until else None, hold)

    def _deleting(self, version: _Version) -> str:
        return f"s3 system {self.config.name!r}: deleting under {version.target.template.text!r}"

    def _boundary(self, action: str) -> AbstractContextManager[None]:
        """Translate botocore's errors into the project's, naming the system, never a key."""
        where = f"s3 system {self.config.name!r} ({action}, bucket {self.config.bucket!r})"
        return map_botocore_errors(where)

    def preview(self, subject: Subject) -> Preview:
        """Versions and delete markers per template that erase() would delete, by its own listing (preview.py)."""
        return preview.look(self, subject)

    def export(self, subject: Subject, *, contents: bool = False) -> Iterator[Part]:
        """The list of the subject's object versions; with `contents`, their bodies too (preview.py)."""
        return preview.read(self, subject, contents)

    def check(self, patterns: Patterns | None = None) -> Checked:
        """The bucket answers and lists under each template, read-only (probe.py)."""
        return probe.check(self)


def _fates(batch: list[_Version], response: dict[str, Any]) -> list[tuple[_Version, dict[str, Any]]]:
    """Each version of a batch with its DeleteObjects error, or {} if it was deleted.

    Entries without a VersionId (moto leaves it out of errors) match by key; an exact match
    comes first, so a key's deleted versions are never taken for its refused one."""
    errors = {(e.get("Key"), e.get("VersionId")): e for e in response.get("Errors", [])}
    deleted = {(d.get("Key"), d.get("VersionId")) for d in response.get("Deleted", [])}
    fates = []
    for version in batch:
        exact, by_key = (version.key, version.version_id), (version.key, None)
        if exact in errors or exact in deleted:
            fates.append((version, errors.get(exact, {})))
        elif by_key in errors or by_key in deleted:
            fates.append((version, errors.get(by_key, {})))
        else:
            fates.append((version, {"Code": NOT_REPORTED}))
    return fates


def _exempt_reason(kept: list[tuple[_Version, _Lock]], subject: Subject) -> str:
    """One line naming each lock, its dates, how many versions it keeps, and their keys as templates."""
    groups: dict[str, list[tuple[_Version, _Lock]]] = {}
    for version, lock in kept:
        groups.setdefault(lock.label, []).append((version, lock))
    parts = []
    for label, members in sorted(groups.items()):
        untils = sorted(lock.retain_until for _, lock in members if lock.retain_until)
        when = f" until {_iso(untils[0])}" if untils else ""
        if untils and untils[-1] != untils[0]:
            when = f" until between {_iso(untils[0])} and {_iso(untils[-1])}"
        keys = sorted({version.templated_key(subject) for version, _ in members})
        shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more keys" if len(keys) > 3 else "")
        parts.append((len(members), f"under {label}{when} ({shown})"))
    if len(parts) == 1:
        return f"S3 Object Lock keeps {_count(len(kept))} {parts[0][1]}"
    return f"S3 Object Lock keeps {_count(len(kept))}: " + "; ".join(f"{n} {text}" for n, text in parts)


def _count(n: int) -> str:
    return f"{n} version" + ("" if n == 1 else "s")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
