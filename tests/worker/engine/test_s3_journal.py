"""The journal for s3 systems: before each DeleteObjects call, the versions each request will have lost
once it is answered are noted in the store, so an attempt that dies after the call and before the store
records its outcome loses no count; one that dies before the call counts them once, when it deletes them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import MakeRuntime, after_a_death, uploads

SUBJECT_42 = 5  # avatars/42/a.png twice, avatars/42/b.png and its delete marker, exports/42.zip


def keys(s3: Any, bucket: str) -> list[str]:
    """Every version's and delete marker's key left, sorted."""
    listed = s3.list_object_versions(Bucket=bucket)
    return sorted(e["Key"] for e in listed.get("Versions", []) + listed.get("DeleteMarkers", []))


@pytest.mark.parametrize("dies", ["after the change", "before the change"])
def test_versions_deleted_or_journaled_by_an_attempt_that_died_are_counted_once(
        make_runtime: MakeRuntime, s3_client: Any, bucket: str, s3_endpoint: str, dies: str) -> None:
    """Killed after its DeleteObjects call and before the store's record, the first attempt's five versions
    of subject 42 are counted by the second, which finds nothing, from the journal; killed after journaling
    and before the call, the second deletes the five and counts five, not ten."""
    rt = make_runtime(uploads(s3_client, bucket, s3_endpoint))
    system, evidence = after_a_death(rt, "uploads", {"user_id": "42"}, dies)

    assert keys(s3_client, bucket) == ["avatars/4/y.png", "avatars/420/x.png", "exports/42.zip.bak"]
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, SUBJECT_42)
    assert evidence.get("by_an_earlier_attempt") == ({"objects": SUBJECT_42} if dies == "after the change" else None)
