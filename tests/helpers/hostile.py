"""Hostile input for the generated tests of tests/hostile/: identifier values built from what breaks a
matcher (wildcards, quotes, SQL comment markers, case and Unicode edge cases, invisible characters), the
neighbours a widened match would take, identifier types with drawn patterns and folds, and checksums
that tell a row, an object or a line untouched."""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from connectors.normalize import Fold, fold_text
from worker.errors import InputError
from worker.identifiers import IdentifierType

PIECES = (  # each a fragment some matcher once took for more than a literal
    "%", "_", "*", "?", "[", "]", "[!a]", "\\", "'", '"', "`", ";", "--", "/*", "*/", "#", "{", "}", "$", "^",
    ".", "..", ".*", "+", "@", "=", "|", "&", "~", ":", "-", " OR 1=1", "' OR '1'='1", "NULL", "null",
    "ß", "SS", "ss", "ẞ", "İ", "i", "I", "ı", "i\u0307", "ΟΔΟΣ", "Σ", "σ", "ς", "e\u0301", "é", "É", "E\u0301",
    "\u212a", "k", "K", "ﬁ", "FI", "ǅ", "Ω", "\u2126", "ΐ", "中", "😀", "\u00e9\u0301",
    "\u200b", "\u200d", "\ufeff", "\u00ad", " ", "  ", "\t", "\u00a0", "\u3000", "\u2028",
    "0", "00", "42", "7", "-0", "1e2", "٤٢", "４２",
)
ALNUM = string.ascii_letters + string.digits
FOLD_CHOICES: tuple[Fold, ...] = ((), ("lower",), ("upper",), ("trim",), ("trim", "lower"), ("trim", "upper"))
PERMISSIVE = r"(?s).+"
PATTERNS = (PERMISSIVE, r"[^@\s]+@[^@\s]+", r"[0-9]{1,18}", r"\S+", r"[\w.%+'-]+", r"[^/]+", r"[A-Z0-9]{1,8}")
INVISIBLE = ("\u200b", "\u200d", "\ufeff", "\u00ad", "\u2060")
SEPARATORS = ("", " ", "\t", "\u00a0", "\u3000", "\n")


def pieces(max_pieces: int = 5) -> st.SearchStrategy[str]:
    """A non-empty text of hostile fragments and plain letters and digits."""
    fragment = st.sampled_from(PIECES) | st.text(ALNUM, min_size=1, max_size=3)
    return st.lists(fragment, min_size=1, max_size=max_pieces).map("".join)


def integer_texts() -> st.SearchStrategy[str]:
    """Texts an integer column might be asked for: plain integers and the spellings that must match nothing."""
    plain = st.integers(-(2**63), 2**63).map(str) | st.integers(0, 500).map(str)
    odd = st.sampled_from(("042", "-0", "+42", "42.0", "4.2e1", " 42", "42 ", "٤٢", "４２", "0x2a", "1_000",
                           "9223372036854775808", "-9223372036854775809", "00", "0042abc", "42abc", "4 2"))
    return plain | odd


def date_texts() -> st.SearchStrategy[str]:
    """Texts a date or timestamp column might be asked for: one spelling each is ISO 8601's, the others
    must match nothing."""
    moments = st.datetimes(datetime(2023, 12, 25), datetime(2024, 1, 8)).map(lambda m: m.replace(microsecond=0))
    spelled = moments.flatmap(lambda m: st.sampled_from((
        m.date().isoformat(), m.isoformat(), m.isoformat(" "), m.strftime("%Y-%m-%dT%H:%M"), m.strftime("%Y%m%d"),
        m.strftime("%Y-%-m-%-d"), m.isoformat() + "Z", m.isoformat() + ".000", " " + m.date().isoformat())))
    return spelled | st.sampled_from(("2024-01-01", "2024-01-01 00:00:00", "2024-01-01T00:00:00", "epoch", "today"))


def decimal_texts() -> st.SearchStrategy[str]:
    """Texts a decimal column might be asked for: plain decimals and other spellings of the same numbers."""
    plain = st.decimals(-1000, 1000, places=2, allow_nan=False, allow_infinity=False).map(plain_decimal)
    return plain | st.sampled_from(("1.5", "01.5", "1.50", "+1.5", "-0", "0", "0.0", "42", "42.0", "042", "4.2e1",
                                    ".5", "0.5", "1,5", " 1.5", "NaN", "Infinity"))


def plain_decimal(number: Decimal) -> str:
    """A decimal written plainly: no exponent, no trailing zeros after the point, "0" for zero."""
    text = format(number.normalize(), "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def folds() -> st.SearchStrategy[Fold]:
    """An identifier type's steps, as `normalize` may give them."""
    return st.sampled_from(FOLD_CHOICES)


def patterns() -> st.SearchStrategy[str]:
    """An identifier type's pattern: permissive, or one of the shapes configs use."""
    return st.sampled_from(PATTERNS)


def identifier(name: str, pattern: str = PERMISSIVE, fold: Fold = ()) -> IdentifierType:
    """An identifier type as [identifiers] makes it."""
    return IdentifierType(name, re.compile(pattern), fold)


def cleaned(kind: IdentifierType, raw: str) -> str | None:
    """The value as intake stores it, or None if intake refuses it."""
    try:
        return kind.clean(raw)
    except InputError:
        return None


def neighbours(value: str) -> list[str]:
    """Texts a widened match would take for `value`: prefixes and suffixes, other cases, padding, other
    Unicode forms, invisible characters, wildcards in its place and injections after it."""
    nfd = unicodedata.normalize("NFD", value)
    found = [
        value + "x", "x" + value, value[:-1], value[1:], value * 2, value + "0", "0" + value,
        value.upper(), value.lower(), value.swapcase(), value.casefold(), value.title(), nfd,
        *(sep + value for sep in SEPARATORS if sep), *(value + sep for sep in SEPARATORS if sep),
        *(mark + value for mark in INVISIBLE[:2]), value + INVISIBLE[2],
        value[:1] + "\u200b" + value[1:], value[:1] + "%", value[:1] + "_" + value[2:],
        "%", "_", "*", "?", "%" + value + "%", value + "*", value + "\\", "'" + value + "'", value + "'; --",
        value + "' OR '1'='1", value + "/*", value.replace(".", "_"), value.replace("@", "%"),
    ]
    return [text for text in dict.fromkeys(found) if text]


def storable(text: str) -> bool:
    """Whether every engine can hold the text (no NUL, no lone surrogate)."""
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def owner(stored: str, fold: Fold | None) -> str:
    """Whose a stored text is: itself folded as the identifier type folds (None: compared as stored)."""
    return stored if fold is None else fold_text(stored, fold)


def checksum(*parts: Any) -> str:
    """A SHA-256 of the parts (bytes as they are, anything else by its repr)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def stored_values(values: Iterable[str]) -> list[str]:
    """The values and their neighbours that every engine can hold, each once."""
    found: dict[str, None] = {}
    for value in values:
        for text in (value, *neighbours(value)):
            if storable(text):
                found[text] = None
    return list(found)


Examples = Callable[[int], Any]  # the `examples` fixture of tests/hostile: settings for n examples
HOSTILE_TOKEN = "hostile-submit-and-read-token"  # noqa: S105 - the hostile runtime's token of both API scopes

# The identifier types of the hostile intake, API and task tests: one per fold, and the shapes configs use.
TYPES: dict[str, dict[str, Any]] = {
    "plain": {"pattern": PERMISSIVE},
    "lowered": {"pattern": PERMISSIVE, "normalize": "lower"},
    "uppered": {"pattern": PERMISSIVE, "normalize": "upper"},
    "trimmed": {"pattern": PERMISSIVE, "normalize": ["trim", "lower"]},
    "email": {"pattern": r"^[^@\s]+@[^@\s]+$", "normalize": "lower"},
    "user_id": {"pattern": "^[0-9]{1,18}$"},
    "code": {"pattern": "^[A-Z0-9]{1,8}$", "normalize": ["trim", "upper"]},
    "handle": {"pattern": PERMISSIVE},  # templated into an s3 system's keys: a '/' is refused
}


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value: scalars of every kind (hostile texts among them), arrays and objects, nested."""
    scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | pieces()
               | st.text(max_size=8) | integer_texts())
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=6) | st.sampled_from(sorted(TYPES)), inner, max_size=3),
                        max_leaves=max_leaves)


def identifier_values() -> st.SearchStrategy[Any]:
    """What a request may give for one identifier type: a text, a list of them, or the wrong shape."""
    text = pieces() | integer_texts() | st.text(max_size=12) | st.sampled_from(("", " ", "a@b", "42", "ABC123"))
    return text | st.lists(text, max_size=3) | json_values(4)


def subject_shapes() -> st.SearchStrategy[Any]:
    """A request's `subject`: mostly a mapping of known and unknown types to values, else anything."""
    keys = st.sampled_from(sorted(TYPES)) | st.text(max_size=10) | pieces(2)
    return st.dictionaries(keys, identifier_values(), max_size=3) | json_values(4)


def free_texts() -> st.SearchStrategy[Any]:
    """`requested_by` or `idempotency_key`: absent, a text, a hostile text, or the wrong shape."""
    return st.none() | st.text(max_size=12) | pieces(3) | st.sampled_from(("", " ", "x" * 201)) | json_values(2)


def scopes() -> st.SearchStrategy[Any]:
    """`scope`: absent, one of the two, or anything else."""
    return st.none() | st.sampled_from(("all", "training", "ALL", "", "everything")) | json_values(2)
