"""AWS S3 and S3-compatible stores, as every connector reaches them: the boto3 client (built
from the settings an `s3` system and an `s3://` snapshot location share) and the one
translation of botocore's errors into the project's, used by connectors/s3/ and
connectors/snapshot/locations/s3.py alike. What an error becomes, the first row that fits:

    the store's answer, or botocore's error                          becomes
    AccessDenied or InvalidRequest whose message names MFA           PermanentError (MFA delete)
    PreconditionFailed, ConditionalRequestConflict                   TransientError (changed meanwhile)
    NoSuchKey, NoSuchVersion, a HEAD answered 404                    TransientError (gone since listed)
    NoSuchBucket, AccessDenied, AllAccessDisabled,                   PermanentError, with the reason
        InvalidAccessKeyId, SignatureDoesNotMatch
    HTTP 429, any 5xx, a throttling code (SlowDown, Throttling,      TransientError
        TooManyRequests, ...), RequestTimeout, InternalError,
        ServiceUnavailable
    any other answer (another 4xx, an unknown code)                  PermanentError
    endpoint unreachable, a timeout, a connection dropped            TransientError
    no credentials, an unknown profile, any other botocore error     PermanentError

A code counts without an HTTP status too: a DeleteObjects answer carries one error per key
(`entry_error`), and `SlowDown` there is as transient as a 503. Messages name the place (the
caller's `where`), the code and the HTTP status; never the store's own message, which may
echo a key, and so never an identifier's value.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

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

from connectors.errors import ConnectorError, PermanentError, TransientError

BATCH = 1000  # the most keys one DeleteObjects call accepts
THROTTLING_CODES = frozenset({
    "SlowDown", "SlowDownRead", "SlowDownWrite", "Throttling", "ThrottlingException", "ThrottledException",
    "RequestThrottled", "RequestThrottledException", "TooManyRequests", "TooManyRequestsException",
    "RequestLimitExceeded", "BandwidthLimitExceeded",
})  # botocore's own list, and MinIO's SlowDownRead/SlowDownWrite
TRANSIENT_CODES = THROTTLING_CODES | {"RequestTimeout", "InternalError", "ServiceUnavailable"}
PERMANENT_CODES = {  # each with the reason given
    "NoSuchBucket": "the bucket does not exist",
    "AccessDenied": "the credentials are not allowed to do this",
    "AllAccessDisabled": "all access to the bucket is disabled",
    "InvalidAccessKeyId": "the store does not know the access key",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
}
GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404"})  # "404": a HEAD's answer has no body
CHANGED_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
MFA_CODES = frozenset({"AccessDenied", "InvalidRequest"})
UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError, HTTPClientError)


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


def add_content_md5(request: Any, **_: Any) -> None:
    """Content-MD5 on a DeleteObjects request, for stores that still demand it (MissingContentMD5)."""
    body = request.body
    if "Content-MD5" in request.headers or not isinstance(body, bytes | str):
        return
    digest = hashlib.md5(body.encode() if isinstance(body, str) else body, usedforsecurity=False).digest()
    request.headers["Content-MD5"] = base64.b64encode(digest).decode()


@contextmanager
def map_botocore_errors(where: str) -> Iterator[None]:
    """Raise any botocore error from inside as the project's, by `translate`, naming the place."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(where, exc) from exc


def translate(where: str, exc: ClientError | BotoCoreError) -> ConnectorError:
    """The project's error for a botocore error, by the table in this module's docstring."""
    if isinstance(exc, ClientError):
        return _answer(where, error_code(exc), http_status(exc), str(exc.response.get("Error", {}).get("Message", "")))
    if isinstance(exc, UNREACHABLE):
        return TransientError(f"{where}: endpoint unreachable ({type(exc).__name__})")
    if isinstance(exc, NoCredentialsError):
        return PermanentError(f"{where}: no AWS credentials found")
    if isinstance(exc, ProfileNotFound):
        return PermanentError(f"{where}: AWS profile {exc.kwargs.get('profile')!r} not found")
    return PermanentError(f"{where}: {type(exc).__name__}")


def entry_error(error: Mapping[str, Any]) -> ClientError:
    """One key's error in a DeleteObjects answer, as the ClientError a whole call would raise (no status)."""
    code, message = str(error.get("Code") or "Unknown"), str(error.get("Message") or "")
    return ClientError({"Error": {"Code": code, "Message": message}}, "DeleteObjects")


def error_code(exc: ClientError) -> str:
    """The S3 error code of an answer (`NoSuchBucket`), or its status (`"404"`) when it had no body."""
    return str(exc.response.get("Error", {}).get("Code") or "Unknown")


def http_status(exc: ClientError) -> int:
    """The answer's HTTP status, or 0 when there is none (a DeleteObjects entry)."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _answer(where: str, code: str, status: int, message: str) -> ConnectorError:
    """The project's error for an S3 error answer (the message is only looked at, never repeated)."""
    label = f"HTTP {status}" if code == str(status) else f"{code} (HTTP {status})" if status else code
    if code in MFA_CODES and "mfa" in message.lower():
        return PermanentError(f"{where}: the bucket requires MFA to delete versions ({code})")
    if code in CHANGED_CODES:
        return TransientError(f"{where}: the object changed since it was read; nothing overwritten ({code})")
    if code in GONE_CODES:
        return TransientError(f"{where}: gone since it was listed ({label})")
    if code in PERMANENT_CODES:
        return PermanentError(f"{where}: {label}: {PERMANENT_CODES[code]}")
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return TransientError(f"{where}: {label}")
    return PermanentError(f"{where}: {label}")
