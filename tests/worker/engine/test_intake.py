"""Intake: a request is validated and normalized before anything is recorded; bad input is
one InputError line with nothing recorded and nothing enqueued, because a value that widens
a match would erase someone else."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import IDENTIFIERS, ListDispatch, MakeRuntime, drain, resolver, stored, stub, system_table
from worker.engine.intake import NotEnqueued, parse_subject_args, submit
from worker.errors import InputError
from worker.runtime import Runtime
from worker.surfaces import views

LONG_IDENTIFIERS = {"note_id": {"pattern": "^.{1,2000}$"}, "anything": {"pattern": ".*"}}
PATH_IDENTIFIERS = {"user_id": IDENTIFIERS["user_id"], "path_id": {"pattern": "^[a-z0-9/]{1,20}$"}}
UPLOADS = system_table("uploads", "s3", bucket="user-uploads", prefixes=["u/{path_id}/"])


@pytest.fixture(autouse=True)
def no_url_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's environment must not move the store these tests read."""
    monkeypatch.delenv("ERASURE_STORE_URL", raising=False)
    monkeypatch.delenv("ERASURE_BROKER_URL", raising=False)


@pytest.fixture
def runtime(make_runtime: MakeRuntime) -> Runtime:
    """A runtime with one stub system per identifier type: crm (user_id), mail (email)."""
    return make_runtime(stub("crm") + stub("mail", uses=["email"]))


def sent(rt: Runtime) -> list[tuple[Any, ...]]:
    """The messages the runtime has enqueued."""
    assert isinstance(rt.dispatch, ListDispatch)
    return rt.dispatch.sent


def opened(rt: Runtime, request_id: str) -> dict[str, list[str]]:
    """The identifiers the request holds, opened with the runtime's keys."""
    return rt.subject(stored(rt, request_id)).to_json()


def refuse(rt: Runtime, subject: Any, **fields: Any) -> str:
    """Submit bad input; assert a one-line InputError, nothing recorded, nothing enqueued."""
    with pytest.raises(InputError) as caught:
        submit(rt, subject, **fields)
    message = str(caught.value)
    assert message and "\n" not in message
    assert views.listing(rt) == []
    assert sent(rt) == []
    return message


# --- refused values --------------------------------------------------------------------------


@pytest.mark.parametrize("subject", [
    pytest.param({"user_id": ""}, id="empty"),
    pytest.param({"email": ""}, id="empty-email"),
    pytest.param({"email": "a" * 1020 + "@b.co"}, id="1025-chars"),
    pytest.param({"user_id": "1 OR 1=1"}, id="sql-injection"),
    pytest.param({"user_id": "42 "}, id="trailing-space"),
    pytest.param({"user_id": " 42"}, id="leading-space"),
    pytest.param({"user_id": "4 2"}, id="inner-space"),
    pytest.param({"user_id": "42\n"}, id="trailing-newline"),
    pytest.param({"user_id": "42\x00"}, id="nul"),
    pytest.param({"user_id": "4\u200b2"}, id="zero-width-space"),
    pytest.param({"email": "bob\u200b@example.com"}, id="zero-width-in-email"),
    pytest.param({"email": "bob@example.com\u202e"}, id="bidi-override"),
    pytest.param({"email": "bob@exa\u2028mple.com"}, id="line-separator"),
    pytest.param({"email": "bob\t@example.com"}, id="tab"),
    pytest.param({"user_id": "%"}, id="percent"),
    pytest.param({"user_id": "42%"}, id="like-wildcard"),
    pytest.param({"user_id": "*"}, id="star"),
    pytest.param({"user_id": "4'2"}, id="quote"),
    pytest.param({"user_id": "4/2"}, id="slash"),
    pytest.param({"user_id": "42.0"}, id="decimal"),
    pytest.param({"user_id": "٤٢"}, id="non-ascii-digits"),
    pytest.param({"user_id": "1" * 19}, id="19-digits"),
    pytest.param({"email": "not-an-email"}, id="email-pattern"),
    pytest.param({"email": "a@b@c"}, id="two-ats"),
])
def test_bad_value_is_refused_with_nothing_recorded(runtime: Runtime, subject: dict[str, str]) -> None:
    """A value that is empty, too long, off-pattern or holds control/format characters is refused."""
    message = refuse(runtime, subject)
    (value,) = subject.values()
    if len(value) >= 2:
        assert value not in message, "an error message must not repeat the value"


@pytest.mark.parametrize("subject", [
    pytest.param(None, id="none"),
    pytest.param({}, id="empty-mapping"),
    pytest.param("user_id=42", id="string"),
    pytest.param(["42"], id="list"),
    pytest.param([("user_id", "42")], id="pairs"),
    pytest.param(42, id="int"),
])
def test_subject_that_is_not_a_nonempty_mapping_is_refused(runtime: Runtime, subject: Any) -> None:
    """No subject at all, or one that is not a mapping of type to values, is refused."""
    refuse(runtime, subject)


@pytest.mark.parametrize("values", [
    pytest.param(42, id="int"),
    pytest.param(None, id="none"),
    pytest.param([], id="empty-list"),
    pytest.param(["42", 7], id="list-with-int"),
    pytest.param(["42", None], id="list-with-none"),
    pytest.param(["42", ["7"]], id="nested-list"),
    pytest.param({"$ne": ""}, id="mapping"),
    pytest.param(("42",), id="tuple"),
])
def test_values_that_are_not_strings_are_refused(runtime: Runtime, values: Any) -> None:
    """Each value is a string; a list of them must hold only strings and at least one."""
    refuse(runtime, {"user_id": values})


def test_empty_value_is_refused_even_where_the_pattern_allows_it(
    make_runtime: MakeRuntime,
) -> None:
    """An empty value never passes, whatever the identifier type's pattern says."""
    rt = make_runtime(stub("notes", uses=["note_id", "anything"]), identifiers=LONG_IDENTIFIERS)
    message = refuse(rt, {"note_id": "n1", "anything": ""})
    assert "empty" in message


def test_empty_subject_is_refused_as_empty(runtime: Runtime) -> None:
    """An empty mapping is refused for carrying no identifier."""
    assert "at least one identifier" in refuse(runtime, {})


def test_type_with_an_empty_list_is_refused_beside_a_good_one(runtime: Runtime) -> None:
    """`{"email": []}` is refused even when another type has a value."""
    message = refuse(runtime, {"user_id": "42", "email": []})
    assert "email" in message


def test_one_bad_value_refuses_the_whole_request(runtime: Runtime) -> None:
    """A list with one good and one bad value is refused whole, not erased in part."""
    refuse(runtime, {"user_id": ["42", "%"]})


def test_one_bad_type_refuses_the_whole_request(runtime: Runtime) -> None:
    """A good user_id does not carry a bad email through."""
    refuse(runtime, {"user_id": "42", "email": "nobody"})


def test_unknown_identifier_type_is_refused_naming_the_known_ones(runtime: Runtime) -> None:
    """An identifier type the config does not declare is refused, listing the declared types."""
    message = refuse(runtime, {"colour": "red"})
    assert "colour" in message and "email, user_id" in message


@pytest.mark.parametrize("key", ["bob@example.com", "123456789012", "user id"])
def test_unknown_type_that_looks_like_a_value_is_not_echoed(runtime: Runtime, key: str) -> None:
    """A value sent as a key (swapped type and value) is refused without repeating it."""
    message = refuse(runtime, {key: "user_id"})
    assert key not in message and "unknown identifier type" in message


def test_value_over_1024_characters_is_refused_as_too_long(
    make_runtime: MakeRuntime,
) -> None:
    """A 1,025-character value is refused for its length even when the pattern would allow it."""
    rt = make_runtime(stub("notes", uses=["note_id"]), identifiers=LONG_IDENTIFIERS)
    message = refuse(rt, {"note_id": "n" * 1025})
    assert "1024" in message


def test_value_of_exactly_1024_characters_is_accepted(
    make_runtime: MakeRuntime,
) -> None:
    """The length limit is inclusive: 1,024 characters pass where the pattern allows them."""
    rt = make_runtime(stub("notes", uses=["note_id"]), identifiers=LONG_IDENTIFIERS)
    answer = submit(rt, {"note_id": "n" * 1024})
    assert opened(rt, answer.request_id) == {"note_id": ["n" * 1024]}


def test_control_characters_are_refused_by_name(runtime: Runtime) -> None:
    """A zero-width space is refused as a control character, not silently stripped."""
    message = refuse(runtime, {"email": "bob\u200b@example.com"})
    assert "control characters" in message


# --- normalization and several values --------------------------------------------------------


def test_email_with_a_quote_is_accepted_and_lowercased(runtime: Runtime) -> None:
    """An apostrophe is legal in an e-mail: kept literally, and the value is lower-cased."""
    answer = submit(runtime, {"email": "O'Brien@Example.com"})
    assert opened(runtime, answer.request_id) == {"email": ["o'brien@example.com"]}


def test_several_values_of_one_type_are_kept_deduplicated(runtime: Runtime) -> None:
    """Every distinct value of a type is kept, once each, including duplicates after normalizing."""
    answer = submit(runtime, {"user_id": ["7", "42", "7"], "email": ["Bob@Example.com", "bob@example.com", "b@c.d"]})
    assert opened(runtime, answer.request_id) == {
        "email": ["b@c.d", "bob@example.com"], "user_id": ["42", "7"],
    }


def test_values_are_not_reinterpreted(runtime: Runtime) -> None:
    """A user_id with leading zeros is kept as written: "042" is not 42."""
    answer = submit(runtime, {"user_id": "042"})
    assert opened(runtime, answer.request_id) == {"user_id": ["042"]}


def test_case_variants_with_one_idempotency_key_are_one_request(runtime: Runtime) -> None:
    """Bob@Example.com and bob@example.com are the same subject, so the second is a duplicate."""
    first = submit(runtime, {"email": "Bob@Example.com"}, idempotency_key="ticket-1")
    second = submit(runtime, {"email": "bob@example.com"}, idempotency_key="ticket-1")
    assert (second.request_id, second.duplicate) == (first.request_id, True)
    assert len(views.listing(runtime)) == 1


# --- idempotency -----------------------------------------------------------------------------


def test_same_key_and_subject_answers_the_first_request(runtime: Runtime) -> None:
    """A repeated submission with the same key and subject gets the same id, duplicate true."""
    first = submit(runtime, {"user_id": ["7", "42"]}, idempotency_key="ticket-1")
    second = submit(runtime, {"user_id": ["42", "7"]}, idempotency_key="ticket-1")
    assert first.duplicate is False
    assert second.to_json() == {"request_id": first.request_id, "status": "received", "duplicate": True}
    assert [r["request_id"] for r in views.listing(runtime)] == [first.request_id]
    assert {m for m in sent(runtime)} == {("start", first.request_id)}


def test_same_key_with_another_subject_is_refused(runtime: Runtime) -> None:
    """An idempotency key already used for another subject is an InputError; nothing new is recorded."""
    first = submit(runtime, {"user_id": "42"}, idempotency_key="ticket-1")
    with pytest.raises(InputError, match="idempotency_key"):
        submit(runtime, {"user_id": "420"}, idempotency_key="ticket-1")
    assert [r["request_id"] for r in views.listing(runtime)] == [first.request_id]
    assert sent(runtime) == [("start", first.request_id)]


def test_without_a_key_each_submission_is_a_new_request(runtime: Runtime) -> None:
    """Without an idempotency key, the same subject twice is two requests."""
    first = submit(runtime, {"user_id": "42"})
    second = submit(runtime, {"user_id": "42"})
    assert first.request_id != second.request_id and not second.duplicate
    assert len(views.listing(runtime)) == 2


def test_duplicate_of_a_finished_request_is_not_enqueued_again(runtime: Runtime) -> None:
    """Once a request has run, a duplicate answers its status and sends nothing."""
    first = submit(runtime, {"user_id": "42"}, idempotency_key="ticket-1")
    drain(runtime)
    again = submit(runtime, {"user_id": "42"}, idempotency_key="ticket-1")
    assert again.to_json() == {"request_id": first.request_id, "status": "completed", "duplicate": True}
    assert sent(runtime) == []


# --- free-text fields ------------------------------------------------------------------------


@pytest.mark.parametrize("requested_by", [
    pytest.param("x" * 201, id="201-chars"),
    pytest.param("alice\nbob", id="newline"),
    pytest.param("alice\x1b[2J", id="escape"),
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param(42, id="int"),
])
def test_bad_requested_by_is_refused(runtime: Runtime, requested_by: Any) -> None:
    """requested_by is at most 200 printable characters, on one line."""
    message = refuse(runtime, {"user_id": "42"}, requested_by=requested_by)
    assert "requested_by" in message


@pytest.mark.parametrize("key", ["k" * 201, "ticket\n1", ""])
def test_bad_idempotency_key_is_refused(runtime: Runtime, key: str) -> None:
    """idempotency_key is at most 200 printable characters, on one line."""
    message = refuse(runtime, {"user_id": "42"}, idempotency_key=key)
    assert "idempotency_key" in message


def test_requested_by_of_200_characters_is_kept(runtime: Runtime) -> None:
    """A requested_by of exactly 200 printable characters is recorded as given."""
    answer = submit(runtime, {"user_id": "42"}, requested_by="support: " + "x" * 191)
    assert stored(runtime, answer.request_id).requested_by == "support: " + "x" * 191


# --- systems ---------------------------------------------------------------------------------


def test_subject_no_system_uses_is_refused(make_runtime: MakeRuntime) -> None:
    """A request whose types no system (or resolver) can use would erase nothing: refused."""
    rt = make_runtime(stub("crm"))
    message = refuse(rt, {"email": "bob@example.com"})
    assert "email" in message


def test_s3_system_vetoes_a_value_with_a_slash(make_runtime: MakeRuntime) -> None:
    """A value with "/" that the pattern allows is still refused by an s3 prefix that would embed it."""
    rt = make_runtime(UPLOADS, identifiers=PATH_IDENTIFIERS)
    message = refuse(rt, {"path_id": "a/b"})
    assert "uploads" in message


def test_s3_system_accepts_a_value_without_a_slash(
    make_runtime: MakeRuntime,
) -> None:
    """The same s3 system takes a plain value, so the veto is what refuses "a/b"."""
    rt = make_runtime(UPLOADS, identifiers=PATH_IDENTIFIERS)
    answer = submit(rt, {"path_id": "ab"})
    assert [s["system"] for s in views.status(rt, answer.request_id)["systems"]] == ["uploads"]


def test_s3_veto_applies_even_when_another_system_takes_the_request(
    make_runtime: MakeRuntime,
) -> None:
    """A value one system cannot use safely refuses the whole request."""
    rt = make_runtime(UPLOADS + stub("crm"), identifiers=PATH_IDENTIFIERS)
    refuse(rt, {"user_id": "42", "path_id": "a/b"})


def test_one_system_row_per_applicable_system(make_runtime: MakeRuntime) -> None:
    """Only the systems matching on one of the request's types get a row, each pending."""
    rt = make_runtime(stub("crm") + stub("mail", uses=["email"]) + stub("both", uses=["user_id", "email"]))
    by_user = views.status(rt, submit(rt, {"user_id": "42"}).request_id)
    by_email = views.status(rt, submit(rt, {"email": "bob@example.com"}).request_id)
    assert [(s["system"], s["kind"], s["status"]) for s in by_user["systems"]] == [
        ("crm", "stub", "pending"), ("both", "stub", "pending"),
    ]
    assert [s["system"] for s in by_email["systems"]] == ["mail", "both"]


def test_resolver_adds_the_systems_of_the_type_it_derives(make_runtime: MakeRuntime, tmp_path: Path) -> None:
    """With a resolver email -> user_id, an email request also gets the user_id systems; not the reverse."""
    rt = make_runtime(
        resolver("app-db", "email", "user_id", "SELECT id FROM users WHERE email = :email")
        + system_table("app-db", "sql", url=f"sqlite:///{tmp_path}/app.db",
                       tables=[{"name": "users", "where": {"id": "user_id"}, "action": "delete"}])
        + stub("crm") + stub("mail", uses=["email"])
    )
    by_email = views.status(rt, submit(rt, {"email": "bob@example.com"}).request_id)
    by_user = views.status(rt, submit(rt, {"user_id": "42"}).request_id)
    assert [s["system"] for s in by_email["systems"]] == ["app-db", "crm", "mail"]
    assert [s["system"] for s in by_user["systems"]] == ["app-db", "crm"]


# --- what is recorded and sent ---------------------------------------------------------------


def test_request_is_recorded_as_received(runtime: Runtime) -> None:
    """A good request is recorded as received with its normalized identifiers and who asked."""
    # a value long enough that the sealed text cannot hold it by chance ("42" is in 1 of ~40 of them)
    answer = submit(runtime, {"user_id": "4242991377"}, requested_by="dpo@example.com", idempotency_key="ticket-1")
    request = stored(runtime, answer.request_id)
    assert answer.to_json() == {"request_id": request.id, "status": "received", "duplicate": False}
    assert (request.status, runtime.subject(request).to_json()) == ("received", {"user_id": ["4242991377"]})
    assert "4242991377" not in (request.sealed_identifiers or "")
    assert (request.requested_by, request.idempotency_key) == ("dpo@example.com", "ticket-1")


def test_deadline_is_received_plus_deadline_days(make_runtime: MakeRuntime) -> None:
    """The deadline is the receipt time plus the configured deadline_days."""
    rt = make_runtime(stub("crm"), top="deadline_days = 10")
    request = stored(rt, submit(rt, {"user_id": "42"}).request_id)
    assert request.deadline - request.received_at == timedelta(days=10)


def test_deadline_defaults_to_30_days(runtime: Runtime) -> None:
    """Without a deadline in the config, a request is due 30 days after receipt."""
    request = stored(runtime, submit(runtime, {"user_id": "42"}).request_id)
    assert request.deadline - request.received_at == timedelta(days=30)


def test_deadline_in_months_uses_the_calendar(make_runtime: MakeRuntime) -> None:
    """With `deadline = "1 month"` the deadline is the config's calendar-month deadline."""
    rt = make_runtime(stub("crm"), top='deadline = "1 month"')
    request = stored(rt, submit(rt, {"user_id": "42"}).request_id)
    assert request.deadline == rt.config.deadline.after(request.received_at)
    assert timedelta(days=28) <= request.deadline - request.received_at <= timedelta(days=31)


def test_message_carries_only_the_request_id(runtime: Runtime) -> None:
    """The enqueued message is ("start", request_id): no identifier travels through the broker."""
    answer = submit(runtime, {"email": "bob@example.com"})
    assert sent(runtime) == [("start", answer.request_id)]


def test_subject_ref_hides_the_value_and_is_stable(runtime: Runtime) -> None:
    """subject_ref never holds the value, is the same for the same subject and differs for another."""
    ref = views.status(runtime, submit(runtime, {"email": "Bob@Example.com"}).request_id)["subject_ref"]
    same = views.status(runtime, submit(runtime, {"email": "bob@example.com"}).request_id)["subject_ref"]
    other = views.status(runtime, submit(runtime, {"email": "alice@example.com"}).request_id)["subject_ref"]
    assert ref == same != other
    assert "bob" not in ref.lower() and "example" not in ref.lower()


def test_broker_failure_keeps_the_request_as_received(runtime: Runtime) -> None:
    """If the broker refuses the message, NotEnqueued says so and the request stays recorded."""

    class DownDispatch(ListDispatch):
        def start(self, request_id: str) -> None:
            raise ConnectionError("broker down")

    runtime.dispatch = DownDispatch()
    with pytest.raises(NotEnqueued):
        submit(runtime, {"user_id": "42"}, idempotency_key="ticket-1")
    runtime.dispatch = ListDispatch()
    again = submit(runtime, {"user_id": "42"}, idempotency_key="ticket-1")
    assert [r["status"] for r in views.listing(runtime)] == ["received"]
    assert sent(runtime) == [("start", again.request_id)]


# --- --subject arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("pair", ["user_id", "=42", ""])
def test_subject_argument_without_type_and_equals_is_refused(pair: str) -> None:
    """`--subject` takes TYPE=VALUE: a missing `=` or type is refused."""
    with pytest.raises(InputError, match="TYPE=VALUE"):
        parse_subject_args([pair])


def test_subject_argument_splits_at_the_first_equals() -> None:
    """`email=a=b@c` keeps everything after the first `=` as the value."""
    assert parse_subject_args(["email=a=b@c"]) == {"email": ["a=b@c"]}


def test_repeated_subject_arguments_collect_values() -> None:
    """Repeated `--subject` of one type give several values, in order."""
    assert parse_subject_args(["user_id=42", "email=b@c.d", "user_id=7"]) == {
        "user_id": ["42", "7"], "email": ["b@c.d"],
    }


def test_subject_argument_with_empty_value_is_refused_at_submit(runtime: Runtime) -> None:
    """`user_id=` parses to an empty value, which submit then refuses."""
    refuse(runtime, parse_subject_args(["user_id="]))


def test_value_lengthened_past_the_limit_by_normalizing_is_refused(make_runtime) -> None:  # type: ignore[no-untyped-def]
    """A value that lower-casing makes longer than 1,024 characters is refused, nothing recorded."""
    handle = {"pattern": "^.{1,3000}$", "normalize": "lower"}
    rt = make_runtime(stub("crm", uses=["handle"]), identifiers={**IDENTIFIERS, "handle": handle})
    with pytest.raises(InputError, match="longer than 1024"):
        submit(rt, {"handle": "\u0130" * 1000})
    assert views.listing(rt) == []
