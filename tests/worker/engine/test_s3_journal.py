"""The journal for s3 systems: before each DeleteObjects call, the versions each request will have lost
once it is answered are noted in the store, so an attempt that dies after the call and before the store
records its outcome loses no count; one that dies before the call counts them once, when it deletes them."""

from __future__ import annotations

from typing import Any

from tests.helpers import MakeRuntime, drain, first_attempt_dies, uploads
from worker.engine import intake
from worker.surfaces import views

SUBJECT_42 = 5  # avatars/42/a.png twice, avatars/42/b.png and its delete marker, exports/42.zip


def keys(s3: Any, bucket: str) -> list[str]:
    """Every version's and delete marker's key left, sorted."""
    listed = s3.list_object_versions(Bucket=bucket)
    return sorted(e["Key"] for e in listed.get("Versions", []) + listed.get("DeleteMarkers", []))


def test_versions_deleted_by_an_attempt_that_died_are_counted_by_the_next(
        make_runtime: MakeRuntime, s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """The first attempt deletes subject 42's five versions and dies before the store records it; the second
    finds nothing, yet the system counts five, from the journal, and says so."""
    rt = make_runtime(uploads(s3_client, bucket, s3_endpoint))
    first_attempt_dies(rt.connector("uploads"), "after the change")
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)

    assert keys(s3_client, bucket) == ["avatars/4/y.png", "avatars/420/x.png", "exports/42.zip.bak"]
    system = views.status(rt, request_id)["systems"][0]
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, SUBJECT_42)
    assert views.evidence(rt, request_id)["uploads"]["by_an_earlier_attempt"] == {"objects": SUBJECT_42}


def test_versions_journaled_but_never_deleted_are_counted_once(
        make_runtime: MakeRuntime, s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """The first attempt journals and dies before its DeleteObjects call: the second deletes the five
    versions and counts five, not ten."""
    rt = make_runtime(uploads(s3_client, bucket, s3_endpoint))
    first_attempt_dies(rt.connector("uploads"), "before the change")
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)

    assert keys(s3_client, bucket) == ["avatars/4/y.png", "avatars/420/x.png", "exports/42.zip.bak"]
    system = views.status(rt, request_id)["systems"][0]
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, SUBJECT_42)
    assert "by_an_earlier_attempt" not in views.evidence(rt, request_id)["uploads"]
