"""The s3 connector against moto's S3 server, over a real socket."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connectors.aws import translate
from connectors.base import Subject
from connectors.errors import ConfigError, PermanentError, TransientError
from connectors.s3.config import S3Config
from connectors.s3.connector import S3Connector
from tests.helpers import s3_connector, system_config, uploads_raw, user


def put(client: Any, bucket: str, *keys: str) -> None:
    """Write one small object at each key."""
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")


def all_versions(client: Any, bucket: str, prefix: str = "") -> list[tuple[str, bool]]:
    """Every (key, is_delete_marker) in the bucket under a prefix, sorted."""
    found = []
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        found += [(v["Key"], False) for v in page.get("Versions", [])]
        found += [(m["Key"], True) for m in page.get("DeleteMarkers", [])]
    return sorted(found)


def keys_left(client: Any, bucket: str) -> list[str]:
    """The keys that still have any version or delete marker."""
    return sorted({key for key, _ in all_versions(client, bucket)})


def versioned(client: Any, bucket: str, status: str = "Enabled") -> None:
    """Turn versioning on (or suspend it)."""
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def api_calls(connector: S3Connector) -> Counter[str]:
    """A live count of the API calls the connector's client makes, by operation name."""
    calls: Counter[str] = Counter()

    def seen(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    connector.client.meta.events.register("before-call.s3.*", seen)
    return calls


def sent_requests(connector: S3Connector) -> list[Any]:
    """A live list of the HTTP requests the connector's client sends."""
    requests: list[Any] = []
    connector.client.meta.events.register("before-send.s3.*", lambda request, **_: requests.append(request))
    return requests


@pytest.fixture
def lock_bucket(s3_client: Any) -> str:
    """A fresh bucket created with Object Lock enabled (and so versioned)."""
    name = f"lock-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def put_version(client: Any, bucket: str, key: str, **lock: Any) -> str:
    """Write one version, with any Object Lock arguments, and return its version id."""
    return str(client.put_object(Bucket=bucket, Key=key, Body=b"x", **lock)["VersionId"])


def retention(mode: str, seconds: float) -> dict[str, Any]:
    """put_object arguments locking a version in a retention mode for some seconds."""
    return {"ObjectLockMode": mode, "ObjectLockRetainUntilDate": datetime.now(UTC) + timedelta(seconds=seconds)}


@pytest.fixture
def uploads(bucket: str, s3_endpoint: str) -> Iterator[S3Connector]:
    """The `uploads` connector on a fresh bucket."""
    with s3_connector(uploads_raw(bucket, s3_endpoint)) as connector:
        yield connector


def test_erases_prefix_and_exact_key_but_not_neighbours(
    uploads: S3Connector, s3_client: Any, bucket: str
) -> None:
    """Everything under avatars/42/ and exports/42.zip go; 420, 4 and 42.zip.bak stay."""
    neighbours = ["avatars/4/a.png", "avatars/420/a.png", "exports/42.zip.bak", "exports/420.zip"]
    put(s3_client, bucket, "avatars/42/a.png", "avatars/42/thumbs/a.png", "exports/42.zip", *neighbours)

    outcome = uploads.erase(user("42"))

    assert outcome.items_erased == 3
    assert keys_left(s3_client, bucket) == sorted(neighbours)


def test_erases_every_version_and_delete_marker(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """In a versioned bucket, 3 versions and a delete marker are all removed."""
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put(s3_client, bucket, "avatars/42/a.png", "avatars/42/a.png", "avatars/42/a.png", "avatars/420/a.png")
    s3_client.delete_object(Bucket=bucket, Key="avatars/42/a.png")
    assert len(all_versions(s3_client, bucket, "avatars/42/")) == 4

    outcome = uploads.erase(user("42"))

    assert outcome.items_erased == 4
    assert sum(o["delete_marker"] for o in outcome.evidence["objects"]) == 1
    assert all_versions(s3_client, bucket, "avatars/42/") == []
    assert all_versions(s3_client, bucket, "avatars/420/") == [("avatars/420/a.png", False)]


def test_erases_every_version_of_an_exact_key(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """Every version of exports/42.zip goes, and no version of exports/42.zip.bak."""
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put(s3_client, bucket, "exports/42.zip", "exports/42.zip", "exports/42.zip.bak", "exports/42.zip.bak")

    outcome = uploads.erase(user("42"))

    assert outcome.items_erased == 2
    assert all_versions(s3_client, bucket) == [("exports/42.zip.bak", False)] * 2


def test_erases_more_than_one_batch(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """1,050 objects under one prefix (more than one DeleteObjects call) all go."""
    keys = [f"avatars/42/{i:04}.png" for i in range(1050)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: put(s3_client, bucket, key), keys))
    put(s3_client, bucket, "avatars/420/a.png")

    outcome = uploads.erase(user("42"))

    assert outcome.items_erased == 1050
    assert len(outcome.evidence["objects"]) == 1050
    assert keys_left(s3_client, bucket) == ["avatars/420/a.png"]


def test_erases_keys_with_spaces_plus_and_non_ascii(
    uploads: S3Connector, s3_client: Any, bucket: str
) -> None:
    """A key such as `avatars/42/my file+ü.png` is found and deleted."""
    put(
        s3_client,
        bucket,
        "avatars/42/my file+ü.png",
        "avatars/42/%20 & <a>.png",
        "avatars/42/my file.png.bak",
    )

    outcome = uploads.erase(user("42"))

    assert outcome.items_erased == 3
    assert keys_left(s3_client, bucket) == []


def test_erases_every_value_of_a_type(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """A subject with two user ids loses the objects of both."""
    put(s3_client, bucket, "avatars/42/a.png", "avatars/43/a.png", "exports/43.zip", "avatars/44/a.png")

    outcome = uploads.erase(user("42", "43"))

    assert outcome.items_erased == 3
    assert keys_left(s3_client, bucket) == ["avatars/44/a.png"]


def test_overlapping_templates_count_each_version_once(bucket: str, s3_endpoint: str, s3_client: Any) -> None:
    """An object matched by two prefixes is deleted and counted once."""
    raw = uploads_raw(bucket, s3_endpoint, prefixes=["avatars/{user_id}/", "avatars/{user_id}/thumbs/"])
    put(s3_client, bucket, "avatars/42/thumbs/a.png", "avatars/42/a.png")

    with s3_connector(raw) as connector:
        outcome = connector.erase(user("42"))

    assert outcome.items_erased == 2
    assert keys_left(s3_client, bucket) == []


def test_second_erase_finds_nothing(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """Erasing twice removes nothing the second time."""
    put(s3_client, bucket, "avatars/42/a.png", "exports/42.zip")
    assert uploads.erase(user("42")).items_erased == 2

    again = uploads.erase(user("42"))

    assert again.items_erased == 0
    assert again.evidence == {"bucket": bucket, "objects": [], "kept": []}


def test_verify_counts_what_is_left(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """verify() counts versions and markers before the erase, and 0 after it."""
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put(s3_client, bucket, "avatars/42/a.png", "avatars/42/a.png", "exports/42.zip", "avatars/420/a.png")
    s3_client.delete_object(Bucket=bucket, Key="exports/42.zip")

    assert uploads.verify(user("42")) == 4
    uploads.erase(user("42"))
    assert uploads.verify(user("42")) == 0
    assert uploads.verify(user("420")) == 1


def test_erases_a_key_that_only_has_delete_markers(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """A key whose every object version is gone but whose delete marker remains loses the marker."""
    versioned(s3_client, bucket)
    version_id = put_version(s3_client, bucket, "avatars/42/a.png")
    s3_client.delete_object(Bucket=bucket, Key="avatars/42/a.png")
    s3_client.delete_object(Bucket=bucket, Key="avatars/42/a.png", VersionId=version_id)
    assert all_versions(s3_client, bucket) == [("avatars/42/a.png", True)]

    outcome = uploads.erase(user("42"))

    assert outcome.items_erased == 1
    assert [o["delete_marker"] for o in outcome.evidence["objects"]] == [True]
    assert all_versions(s3_client, bucket) == []


def test_erases_every_version_in_a_suspended_bucket(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """Versions written before versioning was suspended and a null version written after it all go."""
    versioned(s3_client, bucket)
    put(s3_client, bucket, "avatars/42/a.png", "avatars/42/a.png", "avatars/420/a.png")
    versioned(s3_client, bucket, "Suspended")
    put(s3_client, bucket, "avatars/42/b.png")  # (moto drops older versions of a key rewritten while suspended)
    assert len(all_versions(s3_client, bucket, "avatars/42/")) == 3

    outcome = uploads.erase(user("42"))

    assert outcome.items_erased == 3
    assert "null" in {o["version_id"] for o in outcome.evidence["objects"]}
    assert keys_left(s3_client, bucket) == ["avatars/420/a.png"]


def test_compliance_retention_keeps_versions_and_says_until_when(
    s3_client: Any, lock_bucket: str, s3_endpoint: str
) -> None:
    """Versions under COMPLIANCE retention stay; the rest go; the reason and recheck_at name the earliest end."""
    soon, later = retention("COMPLIANCE", 3600), retention("COMPLIANCE", 7200)
    first, last = (f"{lock['ObjectLockRetainUntilDate']:%Y-%m-%dT%H:%M:%SZ}" for lock in (soon, later))
    kept = {put_version(s3_client, lock_bucket, "avatars/987654/a.png", **soon),
            put_version(s3_client, lock_bucket, "avatars/987654/b.png", **later)}
    put_version(s3_client, lock_bucket, "avatars/987654/a.png")
    put_version(s3_client, lock_bucket, "exports/987654.zip")

    with s3_connector(uploads_raw(lock_bucket, s3_endpoint)) as connector:
        outcome = connector.erase(user("987654"))

    assert outcome.items_erased == 2
    assert outcome.exempt_reason == (
        f"S3 Object Lock keeps 2 versions under COMPLIANCE retention until between {first} and {last}"
        " (avatars/{user_id}/a.png, avatars/{user_id}/b.png)"
    )
    assert outcome.recheck_at is not None and outcome.recheck_at.utcoffset() == timedelta(0)
    assert abs(outcome.recheck_at - soon["ObjectLockRetainUntilDate"]) < timedelta(seconds=1)
    assert {o["version_id"] for o in outcome.evidence["kept"]} == kept
    assert {o["lock"] for o in outcome.evidence["kept"]} == {"COMPLIANCE retention"}
    assert "987654" not in json.dumps(outcome.evidence)
    assert len(all_versions(s3_client, lock_bucket)) == 2


def test_governance_retention_without_bypass_is_exempt(
    s3_client: Any, lock_bucket: str, s3_endpoint: str
) -> None:
    """A version under GOVERNANCE retention stays when the system does not bypass it."""
    lock = retention("GOVERNANCE", 3600)
    put_version(s3_client, lock_bucket, "exports/987654.zip", **lock)

    with s3_connector(uploads_raw(lock_bucket, s3_endpoint)) as connector:
        outcome = connector.erase(user("987654"))

    assert outcome.items_erased == 0
    assert outcome.exempt_reason == (
        "S3 Object Lock keeps 1 version under GOVERNANCE retention until "
        f"{lock['ObjectLockRetainUntilDate']:%Y-%m-%dT%H:%M:%SZ} (exports/{{user_id}}.zip)"
    )
    assert keys_left(s3_client, lock_bucket) == ["exports/987654.zip"]


def test_governance_retention_with_bypass_is_deleted(s3_client: Any, lock_bucket: str, s3_endpoint: str) -> None:
    """With `bypass_governance = true`, a version under GOVERNANCE retention is deleted."""
    put_version(s3_client, lock_bucket, "exports/987654.zip", **retention("GOVERNANCE", 3600))
    raw = uploads_raw(lock_bucket, s3_endpoint, bypass_governance=True)

    with s3_connector(raw) as connector:
        outcome = connector.erase(user("987654"))

    assert (outcome.items_erased, outcome.exempt_reason, outcome.recheck_at) == (1, None, None)
    assert keys_left(s3_client, lock_bucket) == []


def test_legal_hold_is_exempt_until_the_configured_recheck(
    s3_client: Any, lock_bucket: str, s3_endpoint: str
) -> None:
    """A version under a legal hold stays, even with bypass; recheck_at is now + legal_hold_recheck_hours."""
    put_version(s3_client, lock_bucket, "avatars/987654/a.png", ObjectLockLegalHoldStatus="ON")
    put_version(s3_client, lock_bucket, "avatars/987654/b.png")
    raw = uploads_raw(lock_bucket, s3_endpoint, bypass_governance=True, legal_hold_recheck_hours=2)

    with s3_connector(raw) as connector:
        before = datetime.now(UTC)
        outcome = connector.erase(user("987654"))
        after = datetime.now(UTC)

    assert outcome.items_erased == 1
    assert outcome.exempt_reason == "S3 Object Lock keeps 1 version under legal hold (avatars/{user_id}/a.png)"
    assert outcome.recheck_at is not None
    assert before + timedelta(hours=2) <= outcome.recheck_at <= after + timedelta(hours=2)
    assert outcome.evidence["kept"][0] | {"version_id": ""} == {
        "template": "avatars/{user_id}/", "key": "avatars/{user_id}/a.png", "version_id": "",
        "delete_marker": False, "lock": "legal hold", "retain_until": None,
    }


def test_mixed_locks_each_named_and_recheck_at_is_the_earliest(
    s3_client: Any, lock_bucket: str, s3_endpoint: str
) -> None:
    """A retention and a legal hold are both named; recheck_at is the earlier of their rechecks."""
    lock = retention("COMPLIANCE", 600)
    put_version(s3_client, lock_bucket, "avatars/987654/a.png", **lock)
    put_version(s3_client, lock_bucket, "exports/987654.zip", ObjectLockLegalHoldStatus="ON")

    with s3_connector(uploads_raw(lock_bucket, s3_endpoint)) as connector:
        outcome = connector.erase(user("987654"))

    assert outcome.exempt_reason == (
        "S3 Object Lock keeps 2 versions: 1 under COMPLIANCE retention until "
        f"{lock['ObjectLockRetainUntilDate']:%Y-%m-%dT%H:%M:%SZ} (avatars/{{user_id}}/a.png); "
        "1 under legal hold (exports/{user_id}.zip)"
    )
    assert outcome.recheck_at is not None
    assert abs(outcome.recheck_at - lock["ObjectLockRetainUntilDate"]) < timedelta(seconds=1)


def test_erase_after_retention_ends_deletes_the_version(
    s3_client: Any, lock_bucket: str, s3_endpoint: str
) -> None:
    """Once the retain-until date has passed, a second erase deletes the version and is not exempt."""
    lock = retention("COMPLIANCE", 2)
    put_version(s3_client, lock_bucket, "exports/987654.zip", **lock)

    with s3_connector(uploads_raw(lock_bucket, s3_endpoint)) as connector:
        first = connector.erase(user("987654"))
        time.sleep(max(0.0, (lock["ObjectLockRetainUntilDate"] - datetime.now(UTC)).total_seconds()) + 0.3)
        second = connector.erase(user("987654"))

    assert (first.items_erased, first.exempt_reason is not None) == (0, True)
    assert (second.items_erased, second.exempt_reason, second.recheck_at) == (1, None, None)
    assert keys_left(s3_client, lock_bucket) == []


def test_access_denied_without_a_lock_fails_for_good_after_erasing_the_rest(
    uploads: S3Connector, s3_client: Any, bucket: str
) -> None:
    """A refusal no Object Lock explains is a PermanentError naming the template; the rest is deleted."""
    versioned(s3_client, bucket)
    put(s3_client, bucket, "avatars/987654/a.png", "exports/987654.zip")
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
            "Resource": f"arn:aws:s3:::{bucket}/avatars/*"}
    s3_client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]}))

    try:
        with pytest.raises(PermanentError, match="AccessDenied, and no object lock explains it") as err:
            uploads.erase(user("987654"))
    finally:
        s3_client.delete_bucket_policy(Bucket=bucket)

    assert "avatars/{user_id}/" in str(err.value)
    assert "987654" not in str(err.value)
    assert keys_left(s3_client, bucket) == ["avatars/987654/a.png"]


def test_erasing_2100_versions_takes_three_listings_and_three_deletes(
    s3_client: Any, bucket: str, s3_endpoint: str
) -> None:
    """2,100 versions under one prefix: 3 ListObjectVersions pages, 3 DeleteObjects calls, nothing else."""
    versioned(s3_client, bucket)
    keys = [f"avatars/42/{i:04}.png" for i in range(1050)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: put(s3_client, bucket, key), keys))
    for start in range(0, len(keys), 1000):  # a delete marker on each key: its second version
        s3_client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]})

    with s3_connector(uploads_raw(bucket, s3_endpoint, keys=[])) as connector:
        calls = api_calls(connector)
        outcome = connector.erase(user("42"))

    assert outcome.items_erased == 2100
    assert calls == {"ListObjectVersions": 3, "DeleteObjects": 3}
    assert all_versions(s3_client, bucket) == []

def test_evidence_holds_templates_not_identifier_values(
    uploads: S3Connector, s3_client: Any, bucket: str
) -> None:
    """Evidence names keys by their templates and never carries the identifier's value."""
    put(s3_client, bucket, "avatars/987654/photo-987654.png", "exports/987654.zip")

    evidence = uploads.erase(user("987654")).evidence

    assert "987654" not in json.dumps(evidence)
    assert evidence["bucket"] == bucket
    assert sorted((o["template"], o["key"], o["delete_marker"]) for o in evidence["objects"]) == [
        ("avatars/{user_id}/", "avatars/{user_id}/photo-{user_id}.png", False),
        ("exports/{user_id}.zip", "exports/{user_id}.zip", False),
    ]
    assert all(o["version_id"] for o in evidence["objects"])


def test_missing_bucket_is_permanent(s3_endpoint: str) -> None:
    """A bucket that does not exist fails for good, naming the system."""
    raw = uploads_raw(f"missing-{uuid.uuid4().hex[:12]}", s3_endpoint)
    with (
        s3_connector(raw) as connector,
        pytest.raises(PermanentError, match="NoSuchBucket") as err,
    ):
        connector.erase(user("987654"))
    assert "uploads" in str(err.value)
    assert "987654" not in str(err.value)


def test_unreachable_endpoint_is_transient() -> None:
    """An endpoint nobody listens on is a transient failure that does not name the key."""
    with (
        s3_connector(uploads_raw("uploads", "http://127.0.0.1:1")) as connector,
        pytest.raises(TransientError, match="unreachable") as err,
    ):
        connector.erase(user("987654"))
    assert "987654" not in str(err.value)


def test_store_keys_reach_the_client(s3_endpoint: str) -> None:
    """Addressing style, timeouts and checksum settings are what the boto3 client runs with."""
    raw = uploads_raw(
        "uploads", s3_endpoint, addressing_style="virtual", connect_timeout=3, read_timeout=7.5,
        request_checksum_calculation="when_required", response_checksum_validation="when_required",
    )

    with s3_connector(raw) as connector:
        config = connector.client.meta.config

    assert config.s3["addressing_style"] == "virtual"
    assert (config.connect_timeout, config.read_timeout) == (3, 7.5)
    assert (config.request_checksum_calculation, config.response_checksum_validation) == ("when_required",) * 2


def test_store_keys_default_to_ten_and_sixty_seconds(s3_endpoint: str) -> None:
    """Without the keys, timeouts are 10 s and 60 s and addressing is left to botocore ('auto')."""
    with s3_connector(uploads_raw("uploads", s3_endpoint)) as connector:
        config = connector.client.meta.config

    assert (config.connect_timeout, config.read_timeout, config.s3["addressing_style"]) == (10, 60, "auto")


def test_path_addressing_puts_the_bucket_in_the_path(bucket: str, s3_client: Any) -> None:
    """With `addressing_style = "path"` every request goes to http://host/BUCKET/..., never BUCKET.host."""
    endpoint = s3_client.meta.endpoint_url.replace("127.0.0.1", "localhost")
    put(s3_client, bucket, "avatars/42/a.png")

    with s3_connector(uploads_raw(bucket, endpoint, addressing_style="path")) as connector:
        sent = sent_requests(connector)
        outcome = connector.erase(user("42"))

    assert outcome.items_erased == 1
    assert connector.config.botocore_config().s3 == {"addressing_style": "path"}
    assert sent and all(r.url.startswith(f"{endpoint}/{bucket}?") for r in sent)


def test_when_required_checksums_send_content_md5_on_delete_objects(
    bucket: str, s3_client: Any, s3_endpoint: str
) -> None:
    """`request_checksum_calculation = "when_required"` adds a correct Content-MD5 to DeleteObjects."""
    put(s3_client, bucket, "avatars/42/a.png")
    raw = uploads_raw(bucket, s3_endpoint, request_checksum_calculation="when_required")

    with s3_connector(raw) as connector:
        sent = sent_requests(connector)
        connector.erase(user("42"))

    deletes = [r for r in sent if r.method == "POST"]
    assert len(deletes) == 1
    expected = base64.b64encode(hashlib.md5(deletes[0].body).digest()).decode()
    assert deletes[0].headers["Content-MD5"] in (expected, expected.encode())


def test_unknown_profile_fails_for_good_at_first_use(s3_endpoint: str) -> None:
    """A `profile` missing from the AWS config is a PermanentError when erasing, not at start-up."""
    connector = s3_connector(uploads_raw("uploads", s3_endpoint, profile="no-such-profile-7f3a"))

    with connector, pytest.raises(PermanentError, match="AWS profile 'no-such-profile-7f3a' not found"):
        connector.erase(user("42"))


def test_named_profile_supplies_the_credentials(
    bucket: str, s3_client: Any, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `profile`, requests are signed with that profile's access key, not the environment's."""
    (tmp_path / "credentials").write_text("[minio]\naws_access_key_id = PROFILEKEY\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    put(s3_client, bucket, "avatars/42/a.png")

    with s3_connector(uploads_raw(bucket, s3_endpoint, profile="minio")) as connector:
        sent = sent_requests(connector)
        assert connector.erase(user("42")).items_erased == 1

    assert all(b"Credential=PROFILEKEY/" in r.headers["Authorization"] for r in sent)


@pytest.mark.parametrize(
    ("code", "status", "message", "error", "says"),
    [
        ("SlowDown", 503, "Please reduce your request rate.", TransientError, "SlowDown (HTTP 503)"),
        ("ServiceUnavailable", 503, "", TransientError, "ServiceUnavailable"),
        ("InternalError", 500, "", TransientError, "InternalError"),
        ("AccessDenied", 403, "Access Denied", PermanentError, "AccessDenied (HTTP 403)"),
        ("NoSuchBucket", 404, "The specified bucket does not exist", PermanentError, "NoSuchBucket"),
        ("AccessDenied", 403, "Mfa Authentication must be used", PermanentError, "requires MFA"),
        ("InvalidRequest", 400, "DeleteObjects on an MFA delete bucket needs MFA", PermanentError, "requires MFA"),
    ],
    ids=["slowdown", "unavailable", "internal", "access-denied", "no-bucket", "mfa-denied", "mfa-invalid"],
)
def test_error_codes_are_told_apart(code: str, status: int, message: str, error: type, says: str) -> None:
    """Throttling and 5xx are transient; access, a missing bucket and MFA delete are permanent, in one line."""
    answer = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    translated = translate("s3 system 'uploads'", ClientError(answer, "DeleteObjects"))

    assert type(translated) is error
    assert says in str(translated)
    assert "\n" not in str(translated)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"prefixes": ["avatars/{user_id}"]}, "prefixes[0]"),
        ({"prefixes": ["avatars/{account_id}/"]}, "prefixes[0]"),
        ({"keys": ["exports/all.zip"]}, "keys[0]"),
        ({"prefixes": [], "keys": []}, "prefixes"),
        ({"bucket_name": "uploads"}, "bucket_name"),
        ({"bucket": ""}, "bucket"),
        ({"addressing_style": "sideways"}, "addressing_style"),
        ({"endpoint_url": "minio.internal:9000"}, "endpoint_url"),
        ({"region": "us east 1"}, "region"),
        ({"profile": ""}, "profile"),
        ({"request_checksum_calculation": "always"}, "request_checksum_calculation"),
        ({"response_checksum_validation": True}, "response_checksum_validation"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"read_timeout": "60"}, "read_timeout"),
        ({"bypass_governance": "yes"}, "bypass_governance"),
        ({"legal_hold_recheck_hours": -1}, "legal_hold_recheck_hours"),
    ],
    ids=[
        "no-trailing-slash",
        "unknown-type",
        "no-placeholder",
        "nothing-to-erase",
        "unknown-key",
        "empty-bucket",
        "bad-addressing-style",
        "endpoint-without-scheme",
        "region-with-spaces",
        "empty-profile",
        "bad-request-checksum",
        "response-checksum-not-text",
        "zero-connect-timeout",
        "read-timeout-not-number",
        "bypass-not-boolean",
        "negative-recheck-hours",
    ],
)
def test_bad_config_names_file_system_and_key(overrides: dict[str, Any], key: str) -> None:
    """A bad s3 table is refused at start-up, naming the file, the system and the key."""
    with pytest.raises(ConfigError) as err:
        system_config(S3Config, uploads_raw("uploads", "http://127.0.0.1:1") | overrides)
    assert str(err.value).startswith(f"erasure.toml: system 'uploads': {key}: ")


def test_config_reads_the_contract_example() -> None:
    """The contract's example parses, with its identifier types."""
    config = system_config(S3Config, uploads_raw("user-uploads", "http://127.0.0.1:5000", keys=["exports/{email}.zip"]))

    assert config.bucket == "user-uploads"
    assert [t.text for t in config.prefixes] == ["avatars/{user_id}/"]
    assert config.identifier_types == {"user_id", "email"}


@pytest.mark.parametrize("value", ["42/../420", "42/", "42\n", "4\x002"])
def test_problem_with_refuses_slashes_and_control_characters(value: str) -> None:
    """A value that could reach into another prefix is refused, and the reason omits it."""
    config = system_config(S3Config, uploads_raw("uploads", "http://127.0.0.1:1"))

    reason = config.problem_with(Subject({"user_id": ("7", value)}))

    assert reason is not None and "user_id" in reason
    assert value not in reason


def test_problem_with_accepts_plain_values_and_unused_types() -> None:
    """Plain values pass, and a type no template uses is not checked."""
    config = system_config(S3Config, uploads_raw("uploads", "http://127.0.0.1:1"))

    assert config.problem_with(Subject({"user_id": ("42",), "email": ("a/b@example.com",)})) is None
