"""The s3 connector erasing many subjects in one pass, against moto's S3 server over a real socket:
each subject listed on its own, DeleteObjects calls shared, each subject's outcome as if erased alone."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from connectors.base import Outcome
from connectors.errors import ConnectorError, PermanentError
from connectors.s3.connector import S3Connector
from tests.helpers import s3_connector, uploads_raw, user


def put(client: Any, bucket: str, *keys: str) -> None:
    """Write one small object at each key, its body naming the key, in a few threads."""
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=f"body of {key}".encode()), keys))


def contents(client: Any, bucket: str) -> dict[tuple[str, str], bytes]:
    """Every object version in the bucket, by key and version id, with its bytes."""
    found = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            key, vid = version["Key"], version["VersionId"]
            found[key, vid] = client.get_object(Bucket=bucket, Key=key, VersionId=vid)["Body"].read()
    return found


def deletes_sent(connector: S3Connector) -> list[list[tuple[str, str]]]:
    """A live list of the DeleteObjects calls the connector's client makes, each with its (key, version id)s."""
    calls: list[list[tuple[str, str]]] = []

    def seen(params: dict[str, Any], **_: Any) -> None:
        calls.append([(o["Key"], o["VersionId"]) for o in params["Delete"]["Objects"]])

    connector.client.meta.events.register("before-parameter-build.s3.DeleteObjects", seen)
    return calls


def erased(done: list[Outcome | ConnectorError]) -> list[Outcome]:
    """The outcomes, the test failing if any subject failed."""
    assert all(isinstance(outcome, Outcome) for outcome in done), done
    return [outcome for outcome in done if isinstance(outcome, Outcome)]


def without_version_ids(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence with its version ids left out (two buckets seeded alike name their versions differently)."""
    return evidence | {part: [{k: v for k, v in o.items() if k != "version_id"} for o in evidence[part]]
                       for part in ("objects", "kept")}


def a_bucket(client: Any, **options: Any) -> str:
    """A fresh bucket."""
    name = f"b-{uuid.uuid4().hex[:20]}"
    client.create_bucket(Bucket=name, **options)
    return name


@pytest.fixture
def uploads(bucket: str, s3_endpoint: str) -> Any:
    """The `uploads` connector on a fresh bucket."""
    with s3_connector(uploads_raw(bucket, s3_endpoint)) as connector:
        yield connector


def test_three_subjects_share_one_delete_objects_call(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """3 subjects of 10 objects each: one DeleteObjects call of 30 keys, 10 items each, everything else kept."""
    ids = ("101", "202", "303")
    put(s3_client, bucket, *(f"avatars/{i}/{n}.png" for i in ids for n in range(9)), *(f"exports/{i}.zip" for i in ids))
    neighbours = ["avatars/1010/a.png", "avatars/10/a.png", "exports/101.zip.bak", "avatars/404/a.png"]
    put(s3_client, bucket, *neighbours)
    others = {k: body for k, body in contents(s3_client, bucket).items() if k[0] in neighbours}
    calls = deletes_sent(uploads)

    done = erased(uploads.erase_many([user(i) for i in ids]))

    assert [outcome.items_erased for outcome in done] == [10, 10, 10]
    assert [len(call) for call in calls] == [30]
    assert contents(s3_client, bucket) == others
    assert len(others) == 4


def test_1001_keys_take_two_delete_objects_calls(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """Subjects holding 1,001 versions between them share two DeleteObjects calls: 1,000 keys, then 1."""
    put(s3_client, bucket, *(f"avatars/7/{n:04}.png" for n in range(600)))
    put(s3_client, bucket, *(f"avatars/8/{n:04}.png" for n in range(401)))
    calls = deletes_sent(uploads)

    done = erased(uploads.erase_many([user("7"), user("8")]))

    assert [outcome.items_erased for outcome in done] == [600, 401]
    assert [len(call) for call in calls] == [1000, 1]
    assert contents(s3_client, bucket) == {}


def test_counts_and_evidence_are_those_of_erasing_alone(s3_client: Any, s3_endpoint: str) -> None:
    """Two buckets seeded alike, versions and delete markers: erased together, each subject's items and
    evidence equal those of erasing it alone."""
    alone, together = a_bucket(s3_client), a_bucket(s3_client)
    for name in (alone, together):
        s3_client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        put(s3_client, name, "avatars/11/a.png", "avatars/11/b/c.png", "exports/11.zip", "avatars/12/a.png",
            "exports/13.zip", "avatars/13/x-13.png", "avatars/130/a.png")
        put(s3_client, name, "avatars/11/a.png", "exports/13.zip")
        s3_client.delete_object(Bucket=name, Key="avatars/12/a.png")
    subjects = [user("11"), user("12"), user("13"), user("14")]

    with s3_connector(uploads_raw(alone, s3_endpoint)) as connector:
        one_by_one = [connector.erase(subject) for subject in subjects]
    with s3_connector(uploads_raw(together, s3_endpoint)) as connector:
        shared = erased(connector.erase_many(subjects))

    assert [o.items_erased for o in shared] == [o.items_erased for o in one_by_one] == [4, 2, 3, 0]
    assert [without_version_ids(o.evidence) | {"bucket": ""} for o in shared] == [
        without_version_ids(o.evidence) | {"bucket": ""} for o in one_by_one]
    assert sorted(k for k, _ in contents(s3_client, together)) == ["avatars/130/a.png"]
    assert sorted(o["key"] for o in shared[2].evidence["objects"]) == [
        "avatars/{user_id}/x-{user_id}.png", "exports/{user_id}.zip", "exports/{user_id}.zip"]


def test_a_version_two_subjects_list_is_sent_once_and_counts_for_the_first(
    uploads: S3Connector, s3_client: Any, bucket: str
) -> None:
    """The same person asked twice (user 42, and users 42 and 43): each of 42's versions is sent once and
    counted for the first request that listed it, as if they were erased in turn, so that two
    certificates never both count one object."""
    put(s3_client, bucket, "avatars/42/a.png", "exports/42.zip", "avatars/43/a.png", "avatars/420/a.png")
    calls = deletes_sent(uploads)

    done = erased(uploads.erase_many([user("42"), user("42", "43")]))

    assert [o.items_erased for o in done] == [2, 1]
    assert [sorted(o["key"] for o in outcome.evidence["objects"]) for outcome in done] == [
        ["avatars/{user_id}/a.png", "exports/{user_id}.zip"], ["avatars/{user_id}/a.png"]]
    assert [sorted(Counter(key for key, _ in call).values()) for call in calls] == [[1, 1, 1]]
    assert sorted(k for k, _ in contents(s3_client, bucket)) == ["avatars/420/a.png"]


def test_a_prefix_never_takes_a_longer_value(bucket: str, s3_client: Any, s3_endpoint: str) -> None:
    """Erasing users 42 and 4 together under `user/{user_id}/` leaves user/420/, user/4200/ and user/42.txt."""
    neighbours = ["user/420/a.png", "user/4200/a.png", "user/42.txt", "user/42", "users/42/a.png", "user/04/a"]
    put(s3_client, bucket, "user/42/a.png", "user/42/b/c.png", "user/4/a.png", *neighbours)
    raw = uploads_raw(bucket, s3_endpoint, prefixes=["user/{user_id}/"], keys=[])

    with s3_connector(raw) as connector:
        done = erased(connector.erase_many([user("42"), user("4")]))

    assert [o.items_erased for o in done] == [2, 1]
    assert sorted(k for k, _ in contents(s3_client, bucket)) == sorted(neighbours)


def test_a_refused_key_fails_only_its_subject(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """A bucket policy refusing deletes under one person's prefix: that subject alone gets a PermanentError in its
    place (without its value), its other keys still go; the others are erased."""
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put(s3_client, bucket, "avatars/987654/a.png", "exports/987654.zip", "avatars/123456/a.png", "exports/555.zip")
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
            "Resource": f"arn:aws:s3:::{bucket}/avatars/987654/*"}
    s3_client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]}))

    try:
        done = uploads.erase_many([user("123456"), user("987654"), user("555")])
    finally:
        s3_client.delete_bucket_policy(Bucket=bucket)

    first, refused, last = done
    assert isinstance(refused, PermanentError)
    assert "AccessDenied, and no object lock explains it" in str(refused) and "987654" not in str(refused)
    assert isinstance(first, Outcome) and isinstance(last, Outcome)
    assert (first.items_erased, last.items_erased) == (1, 1)
    assert sorted(k for k, _ in contents(s3_client, bucket)) == ["avatars/987654/a.png"]


def test_a_lock_exempts_only_the_subject_it_keeps(s3_client: Any, s3_endpoint: str) -> None:
    """A legal hold on one person's version: that subject is exempt, naming it; the other is plainly erased."""
    bucket = a_bucket(s3_client, ObjectLockEnabledForBucket=True)
    s3_client.put_object(Bucket=bucket, Key="avatars/987654/a.png", Body=b"x", ObjectLockLegalHoldStatus="ON")
    put(s3_client, bucket, "avatars/987654/b.png", "avatars/123456/a.png")

    with s3_connector(uploads_raw(bucket, s3_endpoint)) as connector:
        held, free = erased(connector.erase_many([user("987654"), user("123456")]))

    assert (held.items_erased, free.items_erased) == (1, 1)
    assert held.exempt_reason == "S3 Object Lock keeps 1 version under legal hold (avatars/{user_id}/a.png)"
    assert held.recheck_at is not None and [o["lock"] for o in held.evidence["kept"]] == ["legal hold"]
    assert (free.exempt_reason, free.recheck_at, free.evidence["kept"]) == (None, None, [])


def test_verify_many_counts_each_subject_on_its_own(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """verify_many counts what is left for each subject, a shared version for each that lists it."""
    put(s3_client, bucket, "avatars/42/a.png", "exports/42.zip", "avatars/43/a.png", "avatars/420/a.png")

    assert uploads.verify_many([user("42"), user("42", "43"), user("44")]) == [2, 3, 0]
    erased(uploads.erase_many([user("42", "43")]))
    assert uploads.verify_many([user("42"), user("420")]) == [0, 1]


def test_a_failed_call_fails_every_subject(s3_endpoint: str) -> None:
    """A bucket that is not there fails the whole pass: erase_many raises, no subject is reported erased."""
    with (
        s3_connector(uploads_raw(f"missing-{uuid.uuid4().hex[:12]}", s3_endpoint)) as connector,
        pytest.raises(PermanentError, match="NoSuchBucket"),
    ):
        connector.erase_many([user("42"), user("43")])
