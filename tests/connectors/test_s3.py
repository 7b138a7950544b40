"""The s3 connector against moto's S3 server, over a real socket."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import ConfigReader, Subject
from connectors.s3 import S3Config, S3Connector
from worker.errors import ConfigError, PermanentError, TransientError

IDENTIFIER_TYPES = frozenset({"user_id", "email"})


def read_config(raw: dict[str, Any]) -> S3Config:
    """An s3 config parsed as start-up parses it."""
    return S3Config.read(ConfigReader("erasure.toml", "system 'uploads'", raw, IDENTIFIER_TYPES))


def uploads_raw(bucket: str, endpoint: str, **overrides: Any) -> dict[str, Any]:
    """The `uploads` system table of the contract, pointed at a test bucket."""
    raw = {
        "name": "uploads",
        "kind": "s3",
        "bucket": bucket,
        "endpoint_url": endpoint,
        "region": "us-east-1",
        "prefixes": ["avatars/{user_id}/"],
        "keys": ["exports/{user_id}.zip"],
    }
    return raw | overrides


def user(*user_ids: str) -> Subject:
    """A subject known by user ids."""
    return Subject({"user_id": user_ids})


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


@pytest.fixture
def uploads(bucket: str, s3_endpoint: str) -> Iterator[S3Connector]:
    """The `uploads` connector on a fresh bucket."""
    with S3Connector(read_config(uploads_raw(bucket, s3_endpoint))) as connector:
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

    with S3Connector(read_config(raw)) as connector:
        outcome = connector.erase(user("42"))

    assert outcome.items_erased == 2
    assert keys_left(s3_client, bucket) == []


def test_second_erase_finds_nothing(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """Erasing twice removes nothing the second time."""
    put(s3_client, bucket, "avatars/42/a.png", "exports/42.zip")
    assert uploads.erase(user("42")).items_erased == 2

    again = uploads.erase(user("42"))

    assert again.items_erased == 0
    assert again.evidence == {"bucket": bucket, "objects": []}


def test_verify_counts_what_is_left(uploads: S3Connector, s3_client: Any, bucket: str) -> None:
    """verify() counts versions and markers before the erase, and 0 after it."""
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put(s3_client, bucket, "avatars/42/a.png", "avatars/42/a.png", "exports/42.zip", "avatars/420/a.png")
    s3_client.delete_object(Bucket=bucket, Key="exports/42.zip")

    assert uploads.verify(user("42")) == 4
    uploads.erase(user("42"))
    assert uploads.verify(user("42")) == 0
    assert uploads.verify(user("420")) == 1


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
        S3Connector(read_config(raw)) as connector,
        pytest.raises(PermanentError, match="NoSuchBucket") as err,
    ):
        connector.erase(user("987654"))
    assert "uploads" in str(err.value)
    assert "987654" not in str(err.value)


def test_unreachable_endpoint_is_transient() -> None:
    """An endpoint nobody listens on is a transient failure that does not name the key."""
    with (
        S3Connector(read_config(uploads_raw("uploads", "http://127.0.0.1:1"))) as connector,
        pytest.raises(TransientError, match="unreachable") as err,
    ):
        connector.erase(user("987654"))
    assert "987654" not in str(err.value)


def test_locked_version_fails_naming_code_and_template(s3_endpoint: str, s3_client: Any) -> None:
    """A version the store refuses to delete (object lock) fails for good, naming its template."""
    bucket = f"locked-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3_client.put_object(
        Bucket=bucket,
        Key="avatars/987654/a.png",
        Body=b"x",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=1),
    )

    with S3Connector(read_config(uploads_raw(bucket, s3_endpoint))) as connector:
        with pytest.raises(PermanentError, match="AccessDenied") as err:
            connector.erase(user("987654"))

    assert "avatars/{user_id}/" in str(err.value)
    assert "987654" not in str(err.value)
    assert keys_left(s3_client, bucket) == ["avatars/987654/a.png"]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"prefixes": ["avatars/{user_id}"]}, "prefixes[0]"),
        ({"prefixes": ["avatars/{account_id}/"]}, "prefixes[0]"),
        ({"keys": ["exports/all.zip"]}, "keys[0]"),
        ({"prefixes": [], "keys": []}, "prefixes"),
        ({"bucket_name": "uploads"}, "bucket_name"),
        ({"bucket": ""}, "bucket"),
    ],
    ids=[
        "no-trailing-slash",
        "unknown-type",
        "no-placeholder",
        "nothing-to-erase",
        "unknown-key",
        "empty-bucket",
    ],
)
def test_bad_config_names_file_system_and_key(overrides: dict[str, Any], key: str) -> None:
    """A bad s3 table is refused at start-up, naming the file, the system and the key."""
    with pytest.raises(ConfigError) as err:
        read_config(uploads_raw("uploads", "http://127.0.0.1:1") | overrides)
    assert str(err.value).startswith(f"erasure.toml: system 'uploads': {key}: ")


def test_config_reads_the_contract_example() -> None:
    """The contract's example parses, with its identifier types."""
    config = read_config(uploads_raw("user-uploads", "http://127.0.0.1:5000", keys=["exports/{email}.zip"]))

    assert config.bucket == "user-uploads"
    assert [t.text for t in config.prefixes] == ["avatars/{user_id}/"]
    assert config.identifier_types == {"user_id", "email"}


@pytest.mark.parametrize("value", ["42/../420", "42/", "42\n", "4\x002"])
def test_problem_with_refuses_slashes_and_control_characters(value: str) -> None:
    """A value that could reach into another prefix is refused, and the reason omits it."""
    config = read_config(uploads_raw("uploads", "http://127.0.0.1:1"))

    reason = config.problem_with(Subject({"user_id": ("7", value)}))

    assert reason is not None and "user_id" in reason
    assert value not in reason


def test_problem_with_accepts_plain_values_and_unused_types() -> None:
    """Plain values pass, and a type no template uses is not checked."""
    config = read_config(uploads_raw("uploads", "http://127.0.0.1:1"))

    assert config.problem_with(Subject({"user_id": ("42",), "email": ("a/b@example.com",)})) is None
