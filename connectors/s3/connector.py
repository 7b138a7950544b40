"""The `s3` kind: deletes every version and delete marker under a subject's prefixes and
at a subject's exact keys, in one bucket of S3 or an S3-compatible store.

Many subjects share one pass (`batches`): each subject's templates are rendered and listed on
their own, then the versions of them all are deleted together, in DeleteObjects calls of up to
1,000 keys. Each subject gets its own counts and evidence, as if erased alone: a version two
subjects both list (they share a value: the same person asked twice) is sent once and counts for
each. A version the store refuses fails only the subjects that listed it; the others are erased.

A version under an Object Lock (COMPLIANCE or GOVERNANCE retention, or a legal hold) is kept
and reported as an exemption with the date to try again (locks.py); everything else is deleted.
The credentials need s3:ListBucketVersions, s3:DeleteObject, s3:DeleteObjectVersion, and, to
learn why a version was refused, s3:GetObjectVersion, s3:GetObjectRetention and
s3:GetObjectLegalHold (plus s3:BypassGovernanceRetention with `bypass_governance = true`).

How to reach the bucket (endpoint, region, addressing, profile, checksums) is in
`connectors/s3/config.py`, with MinIO and Ceph examples; which errors are retried is in
`connectors/aws.py`, shared with the snapshot systems on s3:// locations.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.aws import BATCH, GONE_CODES, TRANSIENT_CODES, entry_error, make_client, map_botocore_errors, translate
from connectors.base import (
    Checked,
    Connector,
    Journal,
    Outcome,
    Part,
    Patterns,
    Preview,
    Subject,
    Template,
    every_one,
)
from connectors.errors import ConnectorError, TransientError
from connectors.s3 import preview, probe
from connectors.s3.config import S3Config
from connectors.s3.locks import Lock, exempt_reason, lock_on

PASS_ATTEMPTS = 3  # passes over the subjects a blip failed, as retry_blips gives one erase
JOURNAL_KEY = "objects"  # what erase_many tells the journal its deletes as
DELETE_ATTEMPTS = 3
NOT_REPORTED = "NotReported"  # DeleteObjects named the version neither deleted nor failed
VersionKey = tuple[str, str]  # (key, version id): one version, whoever listed it


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

    @property
    def id(self) -> VersionKey:
        """The version as the store names it."""
        return self.key, self.version_id

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


@dataclass
class _Deletes:
    """What one pass's DeleteObjects calls did: the versions deleted, those refused with AccessDenied
    (perhaps an Object Lock), and the error of every other refusal."""

    deleted: set[VersionKey]
    denied: list[VersionKey]
    errors: dict[VersionKey, ConnectorError]


def _redacted(text: str, subject: Subject) -> str:
    """The text with any identifier value written as its `{type}` placeholder instead."""
    pairs = sorted(((v, t) for t, vs in subject.identifiers.items() for v in vs), key=lambda p: -len(p[0]))
    for value, id_type in pairs:
        if value:
            text = text.replace(value, "{" + id_type + "}")
    return text


class S3Connector(Connector):
    """Deletes every version and delete marker of subjects' objects in one bucket, many subjects a pass."""

    kind = "s3"
    config_class = S3Config
    config: S3Config
    batches = True
    batch_waits = False  # a pass lists and deletes: it takes the requests waiting now, none waits for more

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
        return every_one(self.erase_many([subject]))[0]

    def verify(self, subject: Subject) -> int:
        """How many versions and delete markers are still there."""
        with self._boundary("verify"):
            return len(self._versions(subject))

    def erase_many(self, subjects: Sequence[Subject],
                   journal: Journal | None = None) -> list[Outcome | ConnectorError]:
        """Each subject's versions listed on its own, then all of them deleted together, 1,000 a call: an
        outcome each, as if erased alone, or the error of a subject some of whose versions the store refused.
        A subject a blip failed is tried again (what is left of it), as is the whole pass when a call fails."""
        removed: list[dict[VersionKey, _Version]] = [{} for _ in subjects]  # kept across tries: each lists what is left
        done: dict[int, Outcome | ConnectorError] = {}
        pending = list(range(len(subjects)))
        for attempt in range(1, PASS_ATTEMPTS + 1):
            tell = None if journal is None else functools.partial(_told, journal, len(subjects), tuple(pending))
            try:
                with self._boundary("erase"):
                    results = self._erase_pass([subjects[i] for i in pending], [removed[i] for i in pending], tell)
            except TransientError:
                if attempt == PASS_ATTEMPTS:
                    raise
            else:
                done.update(zip(pending, results, strict=True))
                pending = [i for i in pending if isinstance(done[i], TransientError)]
                if not pending or attempt == PASS_ATTEMPTS:
                    break
            time.sleep(min(2.0, 0.2 * 2**attempt))
        return [done[i] for i in range(len(subjects))]

    def _erase_pass(self, subjects: Sequence[Subject], removed: list[dict[VersionKey, _Version]],
                    tell: Callable[[list[int]], None] | None = None) -> list[Outcome | ConnectorError]:
        """List each subject, delete every version listed (each once, whoever listed it), then ask why the store
        kept each version it refused; each subject's outcome, or the first error met by one of its versions.
        `tell` hears, before each call, how many versions each subject will have lost once it is answered."""
        listed = [{v.id: v for v in self._versions(subject)} for subject in subjects]
        owners: dict[VersionKey, list[int]] = {}
        first: dict[VersionKey, _Version] = {}
        for i, versions in enumerate(listed):
            for vid, version in versions.items():
                owners.setdefault(vid, []).append(i)
                first.setdefault(vid, version)
        order = list(first.values())
        deletes = _Deletes(set(), [], {})
        first_owner = [owners[v.id][0] for v in order]  # a version two subjects list counts for the first
        try:
            for start in range(0, len(order), BATCH):
                if tell is not None:
                    tell([len(r) + first_owner[: start + BATCH].count(i) for i, r in enumerate(removed)])
                self._delete(order[start : start + BATCH], deletes)
        finally:  # even when a call fails: a try again counts what went before it
            for i, versions in enumerate(listed):  # each subject's own versions, in its own listing's order;
                # one two subjects listed (the same person asked twice) counts for the first, as if erased in turn
                removed[i].update((vid, v) for vid, v in versions.items()
                                  if vid in deletes.deleted and owners[vid][0] == i)
        failed: dict[int, ConnectorError] = {}
        for vid, error in deletes.errors.items():
            for i in owners[vid]:
                failed.setdefault(i, error)
        kept: dict[int, list[tuple[_Version, Lock]]] = {}
        for vid in deletes.denied:
            standing = [i for i in owners[vid] if i not in failed]
            if not standing:
                continue  # asked only for the few versions refused, and only for subjects still standing
            try:
                with self._boundary("erase"):
                    lock = self._lock_on(first[vid])
            except ConnectorError as exc:
                failed.update((i, exc) for i in standing)
                continue
            for i in standing:
                kept.setdefault(i, []).append((listed[i][vid], lock))
        hold_recheck = datetime.now(UTC) + timedelta(hours=self.config.legal_hold_recheck_hours)
        return [failed[i] if i in failed else self._outcome(subject, removed[i], kept.get(i, []), hold_recheck)
                for i, subject in enumerate(subjects)]

    def _outcome(self, subject: Subject, removed: dict[VersionKey, _Version], kept: list[tuple[_Version, Lock]],
                 hold_recheck: datetime) -> Outcome:
        """One subject's outcome: the versions it lost, and those a lock keeps, with when to look again."""
        evidence = {
            "bucket": self.config.bucket,
            "objects": [v.evidence(subject) for v in removed.values()],
            "kept": [v.evidence(subject) | lock.evidence() for v, lock in kept],
        }
        if not kept:
            return Outcome(len(removed), evidence)
        return Outcome(
            len(removed),
            evidence,
            exempt_reason=exempt_reason([(v.templated_key(subject), lock) for v, lock in kept]),
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
        found: dict[VersionKey, _Version] = {}
        paginator = self.client.get_paginator("list_object_versions")
        for target in self._targets(subject):
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=target.rendered):
                entries = [(e, False) for e in page.get("Versions", [])]
                entries += [(e, True) for e in page.get("DeleteMarkers", [])]
                for entry, marker in entries:
                    if target.exact and entry["Key"] != target.rendered:
                        continue  # `42.zip` must never take `42.zip.bak`
                    version = _Version(target, entry["Key"], entry.get("VersionId") or "null", marker)
                    found.setdefault(version.id, version)
        return list(found.values())

    def _delete(self, batch: list[_Version], deletes: _Deletes) -> None:
        """Delete one batch of at most 1,000 versions, telling `deletes` what became of each. Throttled
        versions are tried again, a few times; any other refusal is the error of its version, naming the template."""
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
                    deletes.deleted.add(version.id)
                    continue
                code, message = error.get("Code") or "Unknown", error.get("Message") or ""
                if code == "AccessDenied" and "mfa" not in message.lower():
                    deletes.denied.append(version.id)  # perhaps an Object Lock: _lock_on tells
                elif code in TRANSIENT_CODES or code == NOT_REPORTED:
                    retry.append((version, code))
                elif code not in GONE_CODES:
                    deletes.errors[version.id] = translate(self._deleting(version), entry_error(error))
            if not retry:
                return
            if attempt == DELETE_ATTEMPTS:
                for version, code in retry:
                    deletes.errors[version.id] = TransientError(
                        f"{self._deleting(version)}: still failing after {attempt} tries: {code}")
                return
            time.sleep(0.2 * attempt)
            pending = [v for v, _ in retry]

    def _lock_on(self, version: _Version) -> Lock:
        """The Object Lock that kept a refused version (locks.py); PermanentError when none explains it."""
        return lock_on(self.client, self.config.bucket, version.key, version.version_id,
                       delete_marker=version.delete_marker, bypass_governance=self.config.bypass_governance,
                       where=self._deleting(version))

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


def _told(journal: Journal, subjects: int, pending: tuple[int, ...], counts: list[int]) -> None:
    """Tell the journal, before a DeleteObjects call, each subject's versions gone once it is answered (those
    of a try's pending subjects, placed among all of erase_many's subjects): a worker killed after the call
    and before the store's record loses no count."""
    everyone = [0] * subjects
    for i, n in zip(pending, counts, strict=True):
        everyone[i] = n
    journal(JOURNAL_KEY, everyone)
