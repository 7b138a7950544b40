"""The journal for s3 systems: before each DeleteObjects call, the versions each request will have lost
once it is answered are noted in the store, so an attempt that dies after the call and before the store
records its outcome loses no count; one that dies before the call counts them once, when it deletes them."""

from __future__ import annotations

from typing import Any

from connectors.base import Journal
from connectors.s3.connector import S3Connector
from tests.helpers import MakeRuntime, drain, uploads
from worker.engine import intake
from worker.errors import TransientError
from worker.runtime import Runtime
from worker.surfaces import views

SUBJECT_42 = 5  # avatars/42/a.png twice, avatars/42/b.png and its delete marker, exports/42.zip


def first_attempt(rt: Runtime, dies: str) -> None:
    """Make the system's first attempt die "after the call" (deleted, never recorded) or "before the call"
    (journaled, nothing deleted)."""
    connector = rt.connector("uploads")
    assert isinstance(connector, S3Connector)
    erase_many, attempts = connector.erase_many, []

    def dying(subjects: Any, journal: Journal | None = None) -> Any:
        attempts.append(1)
        assert journal is not None
        if len(attempts) > 1:
            return erase_many(subjects, journal)

        def noted(key: str, rows: list[int]) -> None:
            journal(key, rows)
            if dies == "before the call":
                raise KilledBeforeTheCall

        try:
            erase_many(subjects, noted)
        except KilledBeforeTheCall:
            pass
        raise TransientError(f"killed {dies}")

    connector.erase_many = dying  # type: ignore[method-assign]


class KilledBeforeTheCall(Exception):  # noqa: N818 - not an error: where the test stops the attempt
    """Raised by the test's journal after noting, before the connector's DeleteObjects call."""


def keys(s3: Any, bucket: str) -> list[str]:
    """Every version's and delete marker's key left, sorted."""
    listed = s3.list_object_versions(Bucket=bucket)
    return sorted(e["Key"] for e in listed.get("Versions", []) + listed.get("DeleteMarkers", []))


def test_versions_deleted_by_an_attempt_that_died_are_counted_by_the_next(
        make_runtime: MakeRuntime, s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """The first attempt deletes subject 42's five versions and dies before the store records it; the second
    finds nothing, yet the system counts five, from the journal, and says so."""
    rt = make_runtime(uploads(s3_client, bucket, s3_endpoint))
    first_attempt(rt, "after the call")
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
    first_attempt(rt, "before the call")
    request_id = intake.submit(rt, {"user_id": "42"}).request_id
    drain(rt)

    assert keys(s3_client, bucket) == ["avatars/4/y.png", "avatars/420/x.png", "exports/42.zip.bak"]
    system = views.status(rt, request_id)["systems"][0]
    assert (system["status"], system["attempts"], system["items_erased"]) == ("erased", 2, SUBJECT_42)
    assert "by_an_earlier_attempt" not in views.evidence(rt, request_id)["uploads"]
