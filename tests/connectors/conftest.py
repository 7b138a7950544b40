"""Fixtures shared by the connector tests; the real parts themselves are in tests/conftest.py."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def versioned(s3_client: Any, bucket: str) -> str:
    """A fresh bucket with versioning on."""
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket
