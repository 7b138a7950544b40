"""Why the store kept a version DeleteObjects refused: an S3 Object Lock (COMPLIANCE or GOVERNANCE
retention until a date, a legal hold, or both), read with one HeadObject; and the one line that names
what every lock of a subject keeps, its keys written as their templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from connectors.aws import http_status
from connectors.errors import PermanentError, TransientError

LOCK_MODES = frozenset({"COMPLIANCE", "GOVERNANCE"})


@dataclass(frozen=True)
class Lock:
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
        return {"lock": self.label, "retain_until": iso(self.retain_until) if self.retain_until else None}


def lock_on(client: Any, bucket: str, key: str, version_id: str, *, delete_marker: bool, bypass_governance: bool,
            where: str) -> Lock:
    """The Object Lock that kept a refused version; PermanentError when none explains it. A 429 or 5xx
    answer leaves as botocore's error, for the caller's boundary to translate.

    One HeadObject per refused version: it carries retention and legal hold together
    (GetObjectRetention would take a second call, and moto does not serve it)."""
    if delete_marker:
        raise PermanentError(f"{where} failed: AccessDenied on a delete marker, which no lock can hold")
    try:
        head = client.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    except ClientError as exc:
        status = http_status(exc)
        if status == 404:
            raise TransientError(f"{where}: a refused version vanished; listing again") from exc
        if 400 <= status < 500 and status != 429:
            raise PermanentError(
                f"{where} failed: AccessDenied, and its object lock cannot be read (HeadObject: HTTP {status})"
            ) from exc
        raise
    hold = head.get("ObjectLockLegalHoldStatus") == "ON"
    mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
    bypassed = mode == "GOVERNANCE" and bypass_governance
    if mode not in LOCK_MODES or until is None or bypassed:
        mode, until = None, None
    if not hold and mode is None:
        hint = " (GOVERNANCE bypass refused: is s3:BypassGovernanceRetention granted?)" if bypassed else ""
        raise PermanentError(f"{where} failed: AccessDenied, and no object lock explains it{hint}")
    return Lock(mode, utc(until) if until else None, hold)


def exempt_reason(kept: list[tuple[str, Lock]]) -> str:
    """One line naming each lock, its dates, how many versions it keeps, and their keys (as templates)."""
    groups: dict[str, list[tuple[str, Lock]]] = {}
    for templated_key, lock in kept:
        groups.setdefault(lock.label, []).append((templated_key, lock))
    parts = []
    for label, members in sorted(groups.items()):
        untils = sorted(lock.retain_until for _, lock in members if lock.retain_until)
        when = f" until {iso(untils[0])}" if untils else ""
        if untils and untils[-1] != untils[0]:
            when = f" until between {iso(untils[0])} and {iso(untils[-1])}"
        keys = sorted({templated_key for templated_key, _ in members})
        shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more keys" if len(keys) > 3 else "")
        parts.append((len(members), f"under {label}{when} ({shown})"))
    if len(parts) == 1:
        return f"S3 Object Lock keeps {_count(len(kept))} {parts[0][1]}"
    return f"S3 Object Lock keeps {_count(len(kept))}: " + "; ".join(f"{n} {text}" for n, text in parts)


def _count(n: int) -> str:
    return f"{n} version" + ("" if n == 1 else "s")


def utc(moment: datetime) -> datetime:
    """The moment in UTC (a naive one taken as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """The moment as `YYYY-MM-DDTHH:MM:SSZ`."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
