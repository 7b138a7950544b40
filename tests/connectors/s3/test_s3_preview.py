"""The s3 kind's look without acting on a bucket without versioning: its objects (version "null") are
counted as erase() deletes them, and exported with their bodies under names that stay in their folder."""

from __future__ import annotations

from typing import Any

from tests.helpers import s3_connector, uploads_raw, user


def test_an_unversioned_bucket_is_counted_and_read(s3_client: Any, bucket: str, s3_endpoint: str) -> None:
    """Objects under the prefix (a name with `..` and spaces among them) are counted and exported with
    their bodies, each part named inside `objects/`; the neighbour's object is in neither."""
    for key, body in [("avatars/42/../a b.png", b"odd"), ("avatars/42/c.png", b"c"), ("avatars/420/d.png", b"d")]:
        s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    with s3_connector(uploads_raw(bucket, s3_endpoint)) as connector:
        preview = connector.preview(user("42"))
        assert preview.counts["templates"]["avatars/{user_id}/"] == {"versions": 2, "delete_markers": 0}
        parts = {part.name: part for part in connector.export(user("42"), contents=True)}
        listed = list(parts.pop("objects.jsonl").records or ())
        assert {o["key"]: b"".join(parts[o["part"]].content or ()) for o in listed} == {
            "avatars/42/../a b.png": b"odd", "avatars/42/c.png": b"c"}
        assert all(name.startswith("objects/") and ".." not in name.split("/") and " " not in name for name in parts)
        assert connector.erase(user("42")).items_erased == preview.items == 2
