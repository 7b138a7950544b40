"""Intake with generated input: identifier values, patterns and normalize steps drawn at random. A value
is accepted exactly when the documented rules say so, and then stored as its fold; anything else is an
InputError that never repeats the value, and records and enqueues nothing."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from connectors.base import Subject
from connectors.normalize import Fold, describe, fold_text
from tests.helpers import (
    Examples,
    ListDispatch,
    folds,
    free_texts,
    identifier_values,
    patterns,
    pieces,
    scopes,
    subject_shapes,
)
from worker.config import Config, parse
from worker.engine import intake
from worker.errors import InputError
from worker.runtime import Runtime
from worker.store.models import Request, SystemTask

REFUSED = ("Cc", "Cf", "Cs", "Zl", "Zp")  # control, invisible format, lone surrogate, line and paragraph separators


def config_of(pattern: str, fold: Fold) -> Config:
    """A config of one identifier type `t` with this pattern and fold, used by one stub system."""
    steps: Any = describe(fold) if len(fold) < 2 else list(fold)
    return parse({"identifiers": {"t": {"pattern": pattern, "normalize": steps}},
                  "systems": [{"name": "crm", "kind": "stub", "uses": ["t"]}]}, Path("erasure.toml"))


def documented(raw: Any, pattern: str, fold: Fold) -> str | None:
    """The value as configuration.md's rules store it, or None where they refuse it."""
    if not isinstance(raw, str) or not 0 < len(raw) <= 1024:
        return None
    if any(unicodedata.category(c) in REFUSED for c in raw):
        return None
    value = fold_text(raw, fold)
    return value if value and len(value) <= 1024 and re.fullmatch(pattern, value) else None


def recorded(rt: Runtime) -> tuple[int, int]:
    """How many requests and system rows the store holds."""
    with rt.transaction() as session:
        return (session.scalar(select(func.count()).select_from(Request)) or 0,
                session.scalar(select(func.count()).select_from(SystemTask)) or 0)


def test_a_value_is_accepted_exactly_as_the_rules_say(examples: Examples) -> None:
    """For any pattern, normalize steps and value(s): clean_subject stores the documented fold, or raises
    InputError (never another error) without repeating the value."""

    @examples(300)
    @given(pattern=patterns(), fold=folds(), given_values=identifier_values())
    @example(pattern=r"(?s).+", fold=("lower",), given_values="\ud800@x")  # a lone surrogate is no text
    @example(pattern=r"(?s).+", fold=("trim",), given_values=" \u200b ")
    @example(pattern=r"[0-9]{1,18}", fold=(), given_values=["42", "042", "42"])
    def check(pattern: str, fold: Fold, given_values: Any) -> None:
        listed = given_values if isinstance(given_values, list) else [given_values]
        expected = [documented(raw, pattern, fold) for raw in listed]
        try:
            subject = intake.clean_subject(config_of(pattern, fold), {"t": given_values})
        except InputError as exc:
            assert not listed or None in expected, f"refused a value the rules accept: {exc}"
            shown = [raw for raw in listed if isinstance(raw, str) and len(raw) >= 4 and raw in str(exc)
                     and raw not in pattern]  # the pattern is named; a value that is part of it is no leak
            assert shown == [], "the error repeats the value"
            return
        assert listed and None not in expected
        assert subject == Subject({"t": tuple(sorted(set(expected)))})  # type: ignore[arg-type]

    check()


def test_a_stored_value_cleans_to_itself(examples: Examples) -> None:
    """A value as intake stores it is accepted again as itself: the fold is idempotent, so every place that
    folds a value (a resolver, the guard, a redelivered message) agrees on whose it is."""

    @examples(300)
    @given(fold=folds(), raw=pieces(6))
    @example(fold=("upper",), raw="\u0390")  # ΐ upper-cases to Ι, a diaeresis, an acute: not composed
    @example(fold=("lower",), raw="\u0130")
    def check(fold: Fold, raw: str) -> None:
        once = documented(raw, r"(?s).+", fold)
        if once is not None:
            assert fold_text(once, fold) == once

    check()


def test_submit_records_good_input_normalized_and_bad_input_nothing(runtime: Runtime, examples: Examples) -> None:
    """intake.submit with any subject, requested_by, idempotency_key and scope: an InputError records and
    enqueues nothing; an accepted request is stored with its values folded, one row per system that uses
    its types, and one start message."""
    dispatch = runtime.dispatch
    assert isinstance(dispatch, ListDispatch)

    @examples(150 if runtime.config.store_url.startswith("sqlite") else 40)
    @given(subject=subject_shapes(), requested_by=free_texts(), key=free_texts(), scope=scopes())
    @example(subject={"handle": "a/b"}, requested_by=None, key=None, scope=None)  # a '/' in an s3 template
    @example(subject={"email": "\ud800@x"}, requested_by=None, key=None, scope=None)
    @example(subject={"email": "Mary.Smith@X", "code": "  ab12 "}, requested_by="ops", key="k-1", scope="all")
    def check(subject: Any, requested_by: Any, key: Any, scope: Any) -> None:
        before = recorded(runtime)
        dispatch.sent.clear()
        try:
            done = intake.submit(runtime, subject, requested_by, key, scope)
        except InputError:
            assert recorded(runtime) == before
            assert dispatch.sent == []
            return
        clean = intake.clean_subject(runtime.config, subject)
        with runtime.transaction() as session:
            request = session.get(Request, done.request_id)
            assert request is not None
            stored = runtime.subject(request)
            systems = {row.system for row in request.systems}
        assert stored == clean
        for id_type, values in clean.identifiers.items():
            kind = runtime.config.identifiers[id_type]
            assert all(fold_text(v, kind.fold) == v and kind.pattern.fullmatch(v) for v in values)
        if done.duplicate:
            assert recorded(runtime) == before
            return
        types = intake.reachable_types(runtime.config, clean.identifiers)
        assert systems == {s.name for s in runtime.config.systems if s.identifier_types & types}
        assert recorded(runtime) == (before[0] + 1, before[1] + len(systems))
        assert dispatch.sent == [("start", done.request_id)]

    check()


def test_values_of_one_person_typed_differently_make_one_request(runtime: Runtime, examples: Examples) -> None:
    """Spellings that fold alike (case, padding, composed or not) are one subject: a later submit with the
    first's idempotency key answers the first; one that folds otherwise is refused as another subject."""

    @examples(40 if runtime.config.store_url.startswith("sqlite") else 10)
    @given(raw=pieces(4), n=st.integers(0, 10**9))
    def check(raw: str, n: int) -> None:
        spellings = [raw, raw.upper(), raw.lower(), unicodedata.normalize("NFD", raw), f"  {raw}\t"]
        first: tuple[str, str] | None = None  # the first accepted request's id and its value
        for spelled in spellings:
            try:
                done = intake.submit(runtime, {"trimmed": spelled}, idempotency_key=f"same-{n}")
            except InputError:
                continue
            value = fold_text(spelled, ("trim", "lower"))
            if first is None:
                first = (done.request_id, value)
            else:
                assert value == first[1] and done.duplicate and done.request_id == first[0]

    check()


def test_a_lone_surrogate_is_refused_and_records_nothing(runtime: Runtime) -> None:
    """JSON's "\\ud800" decodes to a lone surrogate, which no store, key or file can hold as UTF-8: intake
    refuses it with an InputError naming the type, and records and enqueues nothing (it used to be accepted,
    and failed every system it reached)."""
    dispatch = runtime.dispatch
    assert isinstance(dispatch, ListDispatch)
    try:
        intake.submit(runtime, {"email": "mary\ud800@example.com"})
    except InputError as exc:
        assert str(exc) == "email: the value holds a lone surrogate, which is no Unicode text"
    else:
        raise AssertionError("a lone surrogate was accepted")
    assert recorded(runtime) == (0, 0)
    assert dispatch.sent == []


def test_upper_casing_composes_again_so_a_fold_folds_to_itself() -> None:
    """Upper-casing "ΐ" gives Ι, a diaeresis and an acute: the fold composes them again ("Ϊ́", as a stored
    upper-case value is written), so folding the folded value gives it back."""
    folded = fold_text("\u0390", ("upper",))
    assert folded == "\u03aa\u0301" == unicodedata.normalize("NFC", folded)
    assert fold_text(folded, ("upper",)) == folded
    assert fold_text("\u03aa\u0301", ("trim", "upper")) == fold_text(" \u0390 ", ("trim", "upper"))
