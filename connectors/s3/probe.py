"""The s3 kind's read-only probe (`erasure check`): the bucket answers (HeadBucket) and the credentials
can list versions (ListObjectVersions, one key) under each template's literal prefix, the text before
its first placeholder. S3 has no dry run of a delete, so the delete permissions are named in a note,
not tried: nothing is ever written or deleted."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from botocore.exceptions import ClientError

from connectors.aws import error_code, http_status
from connectors.base import Checked
from connectors.checks import Found
from connectors.s3.config import S3Config

NO_DRY_RUN = ("S3 has no dry run of a delete: s3:DeleteObject and s3:DeleteObjectVersion are not checked "
              "(nor s3:BypassGovernanceRetention)")


class S3(Protocol):
    """The s3 connector as read here (connector.py imports this module, never the reverse)."""

    config: S3Config

    @property
    def client(self) -> Any:
        """The boto3 client."""

    def _boundary(self, action: str) -> AbstractContextManager[None]: ...


def check(connector: S3) -> Checked:
    """The bucket, and a listing under each template's literal prefix."""
    config, found = connector.config, Found()
    bucket = f"bucket {config.bucket!r}"
    with connector._boundary("check"):
        try:
            connector.client.head_bucket(Bucket=config.bucket)
        except ClientError as exc:
            status = http_status(exc)
            if status == 404:
                return Checked((f"{bucket} does not exist (HTTP 404)",))
            if status == 403:
                return Checked((f"{bucket}: access denied (HTTP 403): the credentials may not reach it",))
            raise
        literals = {template.parts[0][0] for template in (*config.prefixes, *config.keys)}
        for literal in sorted(literals):
            try:
                connector.client.list_object_versions(Bucket=config.bucket, Prefix=literal, MaxKeys=1)
            except ClientError as exc:
                label = f"{error_code(exc)} (HTTP {http_status(exc)})"
                found.problems.append(f"{bucket}: listing versions under {literal!r} was refused, {label}: the "
                                      "credentials need s3:ListBucketVersions")
    found.notes.append(NO_DRY_RUN)
    return found.checked()
