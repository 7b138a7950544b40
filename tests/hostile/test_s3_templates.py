"""s3 systems with generated templates and values, against moto's S3 server over a real socket: erasing
subject A removes every version and delete marker under A's rendered prefixes and at A's rendered keys,
and not one byte, version or marker of any other object. No template the config accepts renders another
person's value into a prefix or key of A's."""

from __future__ import annotations

import re
import unicodedata
import uuid
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from connectors.base import Subject
from connectors.errors import ConfigError
from connectors.normalize import Fold
from connectors.s3.config import S3Config
from connectors.s3.connector import S3Connector
from tests.helpers import Examples, cleaned, folds, identifier, neighbours, pieces, storable, system_config

LITERALS = st.lists(st.sampled_from(("u", "avatars", "x-", "-", ".", "..", "%", "+", " ", "=", "~", "é", "*", "?",
                                     "[", "\\", "'", "&", "{{", "}}", "$", "42", "_")), max_size=3).map("".join)


@st.composite
def templates(draw: st.DrawFn, names: tuple[str, ...] = ("handle",)) -> tuple[list[str], list[str]]:
    """Prefixes (each ending '/') and exact keys naming the types once or twice, with hostile literal parts."""
    def one(end: str) -> str:
        head = draw(st.lists(LITERALS, max_size=2).map(lambda parts: "".join(p + "/" for p in parts)))
        first, second = (draw(st.sampled_from(names)) for _ in range(2))
        middle = draw(st.sampled_from((f"{{{first}}}", f"{{{first}}}/{{{second}}}", f"{{{first}}}{{{second}}}",
                                       f"{{{first}}}-{{{second}}}", f"{{{first}}}/x/{{{second}}}")))
        return head + draw(LITERALS) + middle + draw(LITERALS) + end

    prefixes = [one("/") for _ in range(draw(st.integers(0, 2)))]
    keys = [one(draw(st.sampled_from((".zip", "", ".json", "/x")))) for _ in range(draw(st.integers(0, 2)))]
    return prefixes, keys


def config(bucket: str, endpoint: str, prefixes: list[str], keys: list[str], fold: Fold) -> S3Config:
    """The system as start-up reads it (refused templates are not generated)."""
    try:
        return system_config(S3Config, {"name": "uploads", "kind": "s3", "bucket": bucket, "endpoint_url": endpoint,
                                        "region": "us-east-1", "prefixes": prefixes, "keys": keys}, {"handle": fold})
    except ConfigError:
        assume(False)
        raise


def under(key: str, config: S3Config, subject: Subject) -> bool:
    """Whether a key is one of the subject's: under a rendered prefix, or a rendered exact key."""
    return (any(key.startswith(p) for t in config.prefixes for p in t.render(subject))
            or any(key == k for t in config.keys for k in t.render(subject)))


def objects_for(value: str, config: S3Config) -> list[str]:
    """The keys a person known by `value` may have: objects under each prefix, each exact key, and
    neighbours of exact keys."""
    person = Subject({"handle": (value,)})
    found = [p + tail for t in config.prefixes for p in t.render(person) for tail in ("a.png", "s/b")]
    found += [k + tail for t in config.keys for k in t.render(person) for tail in ("", ".bak")]
    return [key for key in found if 0 < len(key.encode()) <= 1024]


def versions(client: Any, bucket: str) -> dict[tuple[str, str], tuple[bool, str]]:
    """Every version and delete marker in the bucket: (key, version id) -> (is a marker, ETag)."""
    found = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        found |= {(v["Key"], v["VersionId"]): (False, v["ETag"]) for v in page.get("Versions", [])}
        found |= {(m["Key"], m["VersionId"]): (True, "") for m in page.get("DeleteMarkers", [])}
    return found


def test_erasing_a_subject_takes_exactly_their_objects(s3_endpoint: str, s3_client: Any, examples: Examples) -> None:
    """Any accepted templates, fold and values, versioned bucket or not: A's prefixes and keys are emptied of
    every version and marker; every other object keeps each version, marker and ETag."""

    @examples(30)
    @given(shapes=templates(), fold=folds(), raw=pieces(4), others=st.lists(pieces(3), max_size=2),
           picks=st.lists(st.integers(0, 60), min_size=3, max_size=6, unique=True), versioned=st.booleans())
    @example(shapes=(["u/{handle}/"], ["e/{handle}.zip"]), fold=("lower",), raw="Mary%2Fx", others=["mary"],
             picks=[0, 1, 2, 3], versioned=True)
    def check(shapes: tuple[list[str], list[str]], fold: Fold, raw: str, others: list[str], picks: list[int],
              versioned: bool) -> None:
        bucket = f"h-{uuid.uuid4().hex[:20]}"
        system = config(bucket, s3_endpoint, *shapes, fold)
        value = cleaned(identifier("handle", fold=fold), raw)
        assume(value is not None)
        assert value is not None
        subject = Subject({"handle": (value,)})
        assume(system.problem_with(subject) is None)  # intake refuses what could reach into others' keys
        near = neighbours(raw)
        values = [raw, *others, *(near[i % len(near)] for i in picks)]
        # moto's server takes no control character in a key (nor can one be a subject's: intake refuses it)
        keys = list(dict.fromkeys(k for v in values if storable(v) for k in objects_for(v, system)
                                  if not any(unicodedata.category(c) == "Cc" for c in k)))
        s3_client.create_bucket(Bucket=bucket)
        if versioned:
            s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        for i, key in enumerate(keys):
            s3_client.put_object(Bucket=bucket, Key=key, Body=key.encode() + b"-1")
            if versioned and i % 3 == 0:
                s3_client.put_object(Bucket=bucket, Key=key, Body=key.encode() + b"-2")
            if versioned and i % 4 == 1:
                s3_client.delete_object(Bucket=bucket, Key=key)
        before = versions(s3_client, bucket)
        with S3Connector(system) as connector:
            outcome = connector.erase(subject)
        after = versions(s3_client, bucket)
        mine = {version for version in before if under(version[0], system, subject)}
        assert {v: before[v] for v in before if v not in mine} == after
        assert outcome.items_erased == len(mine)

    check()


def test_no_accepted_template_renders_another_persons_values_into_a_subjects_keys(examples: Examples) -> None:
    """For any templates the config accepts (over two identifier types) and two people whose values fold
    apart in every type (none with a '/', which intake refuses), no key of the one's lies under a prefix of
    the other's, nor equals a key of the other's."""

    @examples(500)
    @given(shapes=templates(("handle", "other")), fold=folds(), first=st.tuples(pieces(3), pieces(3)),
           second=st.tuples(pieces(3), pieces(3)))
    @example(shapes=(["users/{handle}/", "users/archive/{handle}/"], []), fold=(), first=("archive", "o"),
             second=("42", "p"))
    @example(shapes=(["u/{handle}-{other}/"], []), fold=(), first=("1", "2-3"), second=("1-2", "3"))
    @example(shapes=(["u/{handle}/"], ["u/x{handle}"]), fold=(), first=("x1", "o"), second=("1", "p"))
    def check(shapes: tuple[list[str], list[str]], fold: Fold, first: tuple[str, str], second: tuple[str, str]) -> None:
        try:
            system = system_config(S3Config, {"name": "uploads", "kind": "s3", "bucket": "b", "prefixes": shapes[0],
                                              "keys": shapes[1]}, {"handle": fold, "other": fold})
        except ConfigError:
            return  # refused at start-up: never erases anything
        kind = identifier("handle", fold=fold)
        a, b = ([cleaned(kind, v) for v in person] for person in (first, second))
        assume(None not in a and None not in b and a[0] != b[0] and a[1] != b[1])
        one, other = (Subject({"handle": (p[0],), "other": (p[1],)}) for p in (a, b))
        assume(system.problem_with(one) is None and system.problem_with(other) is None)
        theirs = [p + "a.png" for t in system.prefixes for p in t.render(other)]
        theirs += [k for t in system.keys for k in t.render(other)]
        assert [key for key in theirs if under(key, system, one)] == []

    check()


@pytest.mark.parametrize("template", ["u/{user_id}-{email}/", "u/{user_id}{email}/", "{email}.{user_id}/",
                                      "u/{user_id}{user_id}/", "u/x{user_id}y{user_id}/"])
def test_two_placeholders_in_one_path_segment_are_refused(template: str) -> None:
    """`{user_id}-{email}/` cannot tell where one value ends (user 1 with email 2-3@x and user 1-2 with
    email 3@x render one prefix): start-up refuses it, naming the key."""
    with pytest.raises(ConfigError, match=r"prefixes\[0\]: .*two placeholders in one path segment"):
        system_config(S3Config, {"name": "uploads", "kind": "s3", "bucket": "b", "prefixes": [template]})


@pytest.mark.parametrize(("prefixes", "keys", "named"), [
    (["users/{user_id}/", "users/archive/{user_id}/"], [], "prefixes[1]"),  # user "archive" takes every archive
    (["u/{user_id}/", "u/x{user_id}/"], [], "prefixes[1]"),  # user "x1" takes user 1's folder
    (["{user_id}/", "{email}/"], [], "prefixes[1]"),  # a user id equal to someone's email
    ([], ["exports/{user_id}.zip", "exports/{user_id}"], "keys[1]"),  # user "42.zip" takes 42's export
    (["u/{user_id}/"], ["u/{user_id}.d/x"], "keys[0]"),  # user "7.d" takes 7's key
])
def test_templates_that_could_render_one_key_for_two_people_are_refused(
    prefixes: list[str], keys: list[str], named: str,
) -> None:
    """Two templates one of whose renders could reach the other's for another person: refused at start-up,
    naming the later template's key."""
    raw = {"name": "uploads", "kind": "s3", "bucket": "b", "prefixes": prefixes, "keys": keys}
    with pytest.raises(ConfigError, match=rf"{re.escape(named)}: .*could render one key for two people"):
        system_config(S3Config, raw)


@pytest.mark.parametrize(("prefixes", "keys"), [
    (["avatars/{user_id}/", "avatars/{user_id}/thumbs/"], []),  # one person's folder and its subfolder
    (["avatars/{user_id}/"], ["exports/{user_id}.zip"]),
    (["u/{user_id}/"], ["u/{user_id}.zip"]),  # a folder and a file beside it: a '/' tells them apart
    (["a/{user_id}/{email}/", "b/{email}/"], ["a/{user_id}.json"]),
])
def test_templates_of_one_person_each_are_accepted(prefixes: list[str], keys: list[str]) -> None:
    """Templates whose renders only ever meet for one person are accepted as written."""
    raw = {"name": "uploads", "kind": "s3", "bucket": "b", "prefixes": prefixes, "keys": keys}
    assert [t.text for t in system_config(S3Config, raw).prefixes] == prefixes
