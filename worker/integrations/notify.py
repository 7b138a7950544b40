"""The retraining signal: each model version flagged is announced to the training platform by a
signed POST to `[models] notify_url`, so retraining starts from the flag and not from someone
reading a dashboard.

One notice per flag (a model version, for one request): which model version, which request (by
id, never a subject's value), which snapshots, and why. It carries `Erasure-Signature` (HMAC-SHA256
of the timestamp and the body, under the secret in `[models] secret_env`: connectors/signing.py,
the http connector's signature) and `Idempotency-Key: flag-ID-N` (N grows when the flag names more
snapshots, which sends it again). The store is the outbox: a flag's notice is pending until the
platform answers 2xx (`notified_at`), each failure waits longer (30 s doubling, at most an hour),
forever; the reconciler sends what is due on each pass, at most `BATCH`. Each sent notice is the
audit event `model.notified`; each failure the warning `model.notify_failed`. Redirects are not
followed: a notice goes to the URL configured, or nowhere."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import or_, select

from connectors import signing
from worker.engine import audit
from worker.errors import ConfigError
from worker.runtime import Runtime
from worker.store.models import FlagState, ModelFlag, utcnow

log = structlog.get_logger("erasure.notify")
BATCH = 50  # notices a reconciler pass sends at most
FIRST_WAIT, LONGEST_WAIT = 30.0, 3600.0
IN_FLIGHT = timedelta(minutes=5)  # a notice taken by a pass is not taken by another this long


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is answered as it is: a failure, tried again later


_opener = urllib.request.build_opener(_NoRedirects)


def notice(flag: ModelFlag) -> dict[str, Any]:
    """The body of a flag's notice (no identifier value: the request by id only)."""
    return {"event": "model.flagged", "model": flag.model, "version": flag.version, "request_id": flag.request_id,
            "snapshots": list(flag.snapshots), "reason": flag.reason, "state": flag.state,
            "flagged_at": flag.flagged_at.isoformat() + "Z"}


def send_due(rt: Runtime, limit: int = BATCH) -> int:
    """Send the notices that are due; how many were taken by the platform."""
    settings = rt.config.models
    if settings.notify_url is None:
        return 0
    now = utcnow()
    with rt.transaction() as session:
        flags = session.scalars(
            select(ModelFlag)
            .where(ModelFlag.notified_at.is_(None), ModelFlag.state.in_([FlagState.OPEN, FlagState.ACKNOWLEDGED]),
                   or_(ModelFlag.notify_after.is_(None), ModelFlag.notify_after <= now))
            .order_by(ModelFlag.id).limit(limit).with_for_update(skip_locked=True)).all()
        taken = [(f.id, len(f.snapshots), notice(f)) for f in flags]
        for flag in flags:  # in flight: another pass leaves them until this one has answered
            flag.notify_after = now + IN_FLIGHT
    if not taken:
        return 0
    try:
        secret = settings.secret()
    except ConfigError as exc:
        log.error("model.notify_unsigned", flags=len(taken), error=str(exc))
        _record(rt, [(flag_id, None, str(exc)) for flag_id, _, _ in taken])
        return 0
    answers = [(flag_id, *_post(settings.notify_url, secret, body, f"flag-{flag_id}-{count}",
                                 settings.timeout_seconds)) for flag_id, count, body in taken]
    return _record(rt, answers)


def _post(url: str, secret: bytes, body: dict[str, Any], key: str, timeout: float) -> tuple[int | None, str | None]:
    """POST one notice; (status, None) when answered, (status or None, error) when not taken."""
    data = json.dumps(body, sort_keys=True).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "Idempotency-Key": key, signing.HEADER: signing.sign(secret, data)})
    try:
        with _opener.open(request, timeout=timeout) as answer:
            return answer.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(reason).__name__}: {str(reason)[:200]}"


def _record(rt: Runtime, answers: list[tuple[int, int | None, str | None]]) -> int:
    """Each notice's answer, in one transaction: taken, or due again after its backoff."""
    now, sent = utcnow(), 0
    with rt.transaction() as session:
        for flag_id, status, error in answers:
            flag = session.get(ModelFlag, flag_id)
            if flag is None:
                continue
            if error is None and status is not None and 200 <= status < 300:
                flag.notified_at, flag.notify_after = now, None
                audit.record(session, "model.notified", flag.request_id, model=flag.model, version=flag.version,
                             snapshots=list(flag.snapshots), status=status)
                log.info("model.notified", request_id=flag.request_id, model=flag.model, version=flag.version,
                         status=status)
                sent += 1
                continue
            flag.notify_attempts = (flag.notify_attempts or 0) + 1
            wait = min(FIRST_WAIT * 2 ** (flag.notify_attempts - 1), LONGEST_WAIT)
            flag.notify_after = now + timedelta(seconds=wait)
            log.warning("model.notify_failed", request_id=flag.request_id, model=flag.model, version=flag.version,
                        attempts=flag.notify_attempts, status=status, error=error, retry_in=wait)
    return sent
