"""Where a SQL engine's case step is not Python's, and how the rows it would fold otherwise are decided.

PostgreSQL lowers "İ" to "i" (Python: "i̇", an i and a combining dot) and a word-final "Σ" to "σ" (Python:
"ς"); MariaDB's tables are older than Python's (its lower() leaves "Ƞ" as it is) and it has no NFC. So the
engine's fold of one person's stored value could equal another person's folded value (erasing "i" would take
a stored "İ": a widened match), or miss the person's own. Which characters differ depends on the engine, its
version, its locale and the column's collation, so they are learned from the engine itself, once per
database, collation and step: every character of Unicode is folded there and here, one by one (about 0.4 s,
and 1 s more once per process), with a few contexts some locales case otherwise, Python's context (a final
Σ) and the combining marks Python's NFC after the case step composes (upper "ı" and an acute: "Í").

A stored text holding none of those characters folds there as here: it is compared in SQL, as always
(`fold(col) IN (values)`). A stored text holding one is decided in Python: in the same transaction, such rows
are selected by what the engine's fold of a person's own could be (the request's value with each piece an
edge character folds to in Python replaced by the engine's fold of that character, so that an index on the
fold still serves), folded by Python, and taken by their stored value (byte for byte) only if theirs."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors.normalize import Fold, fold_text
from connectors.sql.match import CHUNK, Condition, among, equal, folded

SEPARATOR = "\n"  # between the characters sent to be folded: no case, no composition, no engine changes it
PART = 1 << 17  # characters folded per query: well under MariaDB's smallest max_allowed_packet
LIMIT = 64  # the engine's spellings of one value looked for; beyond, every row holding an edge character is read
CONTEXT = {"lower": ("Σ", ("σ", "ς"))}  # Python lowers Σ by its context (ς ends a word); engines often do not
PROBES = {  # contexts some locales case otherwise (lt, tr, az, el): if the engine does, its spellings are unknown
    "lower": ("I\u0305", "J\u0305", "\u012e\u0305", "I\u0323\u0307"),
    "upper": ("i\u0307", "j\u0307", "i\u0323\u0307", "\u03ac\u03b9"),
}
_LEARNED: dict[tuple[str, str, str, bool], Edges] = {}


@dataclass(frozen=True)
class Edges:
    """What one engine's case step does otherwise than Python's: the characters that send a stored text to
    Python, and for each piece of a folded value that such a character gives in Python, the engine's folds of it."""

    chars: frozenset[str]
    spellings: Mapping[str, frozenset[str]]
    starts: Mapping[str, tuple[str, ...]]  # the pieces by their first character
    scan: bool = False  # the engine's spellings are not known: every row holding an edge character is read
    non_ascii: bool = False  # every character beyond ASCII is an edge (a PostgreSQL database not in UTF8)

    @functools.cached_property
    def composed_from(self) -> frozenset[str]:
        """The characters one of which a text must hold for its NFC to hold an edge character: those whose
        decomposition holds the last character of an edge character's (İ's is I and U+0307: U+0307, ȧ, İ...)."""
        last = {unicodedata.normalize("NFD", char)[-1] for char in self.chars}
        return frozenset(char for char in _decomposable() if last & set(unicodedata.normalize("NFD", char))) | last

    def found_in(self, text: sa.ColumnElement[Any], dialect: str, raw: sa.ColumnElement[Any] | None = None,
                 ) -> Condition:
        """The text holds an edge character (a regular expression's class, bound, matched case-sensitively).
        Where the text is the raw one composed by the engine (normalize() costs more than the rest of the fold),
        the raw text is looked at first, for a character that NFC could make an edge of."""
        found = _holds(text, self.chars, self.non_ascii, dialect)
        return found if raw is None else sa.and_(_holds(raw, self.composed_from, self.non_ascii, dialect), found)

    def engine_folds(self, value: str) -> set[str] | None:
        """Every fold the engine could give a stored text that Python folds to the value (a few more do no
        harm: they are folded here again); None if they are too many, or unknown."""
        if self.scan:
            return None
        ends: list[set[str]] = [set() for _ in range(len(value) + 1)]
        ends[0].add("")
        for i, char in enumerate(value):
            nexts = [(char, i + 1)] + [(spelled, i + len(piece)) for piece in self.starts.get(char, ())
                                        if value.startswith(piece, i) for spelled in self.spellings[piece]]
            for text in ends[i]:
                for spelled, j in nexts:
                    ends[j].add(text + spelled)
            if any(len(found) > LIMIT for found in ends):
                return None
        return ends[-1]


def decided(conn: sa.Connection, column: sa.Column[Any], fold: Fold, folded_column: sa.ColumnElement[Any],
            before_case: sa.ColumnElement[Any], values: list[str], edges: Edges, composed: bool) -> list[Condition]:
    """`fold(col) IN (values)` for the rows without an edge character, and the rows with one that Python folds
    to a value, by their stored text: one condition per chunk of values. `composed`: the engine composes the
    stored text (NFC) before its case step."""
    dialect = conn.dialect.name
    exact_text, edgy = dialect == "mysql", edges.found_in(before_case, dialect, column if composed else None)
    theirs: dict[str, dict[Any, Any]] = {}  # Python's fold -> {stored value, as compared: the engine's fold}
    stored = stored_text(column, dialect)
    for value, text, engine_fold in _edge_rows(conn, stored, folded_column, edgy, values, edges):
        theirs.setdefault(fold_text(text, fold), {})[value] = engine_fold
    found = []
    for i in range(0, len(values), CHUNK):
        chunk = values[i : i + CHUNK]
        alike = sa.and_(*equal(folded_column, chunk, exact_text), sa.not_(edgy))
        own = {value: engine_fold for one in chunk for value, engine_fold in theirs.get(one, {}).items()}
        if not own:
            found.append(alike)
            continue
        served = among(folded_column, list(dict.fromkeys([*chunk, *own.values()])))  # an index on the fold serves
        found.append(sa.and_(served, sa.or_(alike, among(stored, list(own)))))
    return found


def stored_text(column: sa.Column[Any], dialect: str) -> sa.ColumnElement[Any]:
    """The stored text as compared byte for byte: as UTF-8 bytes on MySQL and MariaDB (whose collations ignore
    case), as text in the C collation on PostgreSQL (a citext or a nondeterministic collation ignores it too)."""
    if dialect == "mysql":
        return sa.cast(sa.cast(column, mysql.CHAR(charset="utf8mb4")), sa.LargeBinary)
    return sa.collate(sa.cast(column, sa.Text), "C")


def _edge_rows(conn: sa.Connection, stored: sa.ColumnElement[Any], folded_column: sa.ColumnElement[Any],
               edgy: Condition, values: list[str], edges: Edges) -> list[tuple[Any, str, Any]]:
    """The stored values holding an edge character whose engine's fold could be a value's, each once: as
    compared, as text, and the engine's fold."""
    if not values:
        return []
    query = sa.select(stored, folded_column).distinct()
    wanted: set[str] | None = set()
    for value in values:
        spelled = edges.engine_folds(value)
        wanted = None if wanted is None or spelled is None else wanted | spelled
    # the fold first: MariaDB evaluates in the order written, and the class is long
    matches = [sa.true()] if wanted is None else equal(folded_column, sorted(wanted))
    rows = [tuple(row) for match in matches for row in conn.execute(query.where(match, edgy))]
    texts = [(value, value.decode() if isinstance(value, bytes) else value, fold) for value, fold in rows]
    return [(value, text, fold) for value, text, fold in texts if isinstance(text, str)]


def learn(conn: sa.Connection, step: str, collation: str | None, nfc: bool) -> Edges | None:
    """The edges of the engine's `step` (lower or upper) for a column of this collation, learned once per
    database; None if the engine does not fold one character at a time (nothing can be told then)."""
    key = (conn.engine.url.set(password=None).render_as_string(), step, collation or "", nfc)
    if key in _LEARNED:
        return _LEARNED[key]
    restricted = conn.dialect.name == "postgresql" and not nfc  # not UTF8: ASCII is all that can be asked
    python, differ = _python(step), dict[str, str]()
    for chars in _parts(restricted):
        got = _there(conn, chars, step, collation, nfc)
        if got != SEPARATOR.join(python.get(c, c) for c in chars):  # one by one only where some differ
            each = got.split(SEPARATOR) if got is not None else []
            if len(each) != len(chars):
                return None
            differ.update((c, one) for c, one in zip(chars, each, strict=True) if one != python.get(c, c))
    spellings: dict[str, set[str]] = {}
    for char, spelled in differ.items():
        spellings.setdefault(python.get(char, char), set()).add(spelled)
    edge = set(differ)
    if step in CONTEXT:
        char, pieces = CONTEXT[step]
        edge.add(char)
        for piece in pieces:
            spellings.setdefault(piece, set()).update(pieces)
    for composed, base, mark in _compositions(step):
        edge.add(mark)
        spellings.setdefault(composed, set()).add(differ.get(base, python.get(base, base)) + mark)
    unlike = [] if restricted else _contexts(conn, step, collation, nfc)
    if unlike is None:
        return None
    edge.update(char for probe in unlike for char in probe)
    starts: dict[str, list[str]] = {}
    for piece in spellings:
        starts.setdefault(piece[0], []).append(piece)
    edges = Edges(frozenset(edge), {piece: frozenset(s) for piece, s in spellings.items()},
                  {first: tuple(pieces) for first, pieces in starts.items()}, scan=bool(unlike) or restricted,
                  non_ascii=restricted)
    _LEARNED[key] = edges
    return edges


def _contexts(conn: sa.Connection, step: str, collation: str | None, nfc: bool) -> list[str] | None:
    """The probes the engine cases otherwise than each of their characters alone (its spellings then are
    unknown); None if it does not answer one for one."""
    normalized = conn.dialect.name == "postgresql" and nfc  # the engine composes first
    probes = [(probe, unicodedata.normalize("NFC", probe) if normalized else probe) for probe in PROBES[step]]
    singles = sorted({char for _, text in probes for char in text})
    out = _there(conn, [*(probe for probe, _ in probes), *singles], step, collation, nfc)
    got = out.split(SEPARATOR) if out is not None else []
    if len(got) != len(probes) + len(singles):
        return None
    alone = dict(zip(singles, got[len(probes) :], strict=True))
    return [probe for (probe, text), spelled in zip(probes, got, strict=False)
            if spelled != "".join(alone[char] for char in text)]


def _there(conn: sa.Connection, texts: Sequence[str], step: str, collation: str | None, nfc: bool) -> str | None:
    """The engine's fold of the texts, each folded as the column's would be, joined by the separator (one
    query); None if it answers no text."""
    text: sa.ColumnElement[Any] = sa.bindparam(None, SEPARATOR.join(texts), type_=sa.UnicodeText)
    if collation:
        text = sa.collate(text, collation)
    out = conn.execute(sa.select(folded(text, (step,), conn.dialect.name, nfc))).scalar_one()
    return out if isinstance(out, str) else None


def _parts(ascii_only: bool) -> Iterator[list[str]]:
    """The characters to fold, in parts of one query each (made as needed: all of them at once would hold
    a hundred megabytes)."""
    end = 0x80 if ascii_only else 0x110000
    for start in range(1, end, PART):
        yield [chr(i) for i in range(start, min(end, start + PART)) if _foldable(i)]


def _foldable(point: int) -> bool:
    """Every character but NUL (no PostgreSQL text holds it), the surrogates and the separator."""
    return not 0xD800 <= point <= 0xDFFF and point != ord(SEPARATOR)


def _holds(text: sa.ColumnElement[Any], chars: frozenset[str], non_ascii: bool, dialect: str) -> Condition:
    """The text holds one of the characters (or any beyond ASCII): a regular expression's class of ranges."""
    ranges: list[tuple[int, int]] = []
    for point in sorted(ord(c) for c in chars if c.isascii() or not non_ascii):
        if ranges and point == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], point)
        else:
            ranges.append((point, point))
    ranges += [(0x80, 0x10FFFF)] if non_ascii else []
    if not ranges:
        return sa.false()
    escape = (lambda p: f"\\U{p:08x}") if dialect == "postgresql" else (lambda p: f"\\x{{{p:x}}}")
    spelled = "".join(escape(a) if a == b else f"{escape(a)}-{escape(b)}" for a, b in ranges)
    if dialect == "mysql":  # a case-insensitive collation would make the class case-insensitive too
        text = sa.collate(text, "utf8mb4_bin")
    return text.regexp_match(sa.literal(f"[{spelled}]", sa.String))


@functools.cache
def _decomposable() -> tuple[str, ...]:
    """Every character with a canonical decomposition."""
    return tuple(c for chars in _parts(False) for c in chars if unicodedata.decomposition(c)[:1] not in ("", "<"))


@functools.cache
def _python(step: str) -> dict[str, str]:
    """Python's fold of each character the step (with NFC before and after) changes."""
    changed = {}
    for char in (c for chars in _parts(False) for c in chars):
        if getattr(char, step)() != char or not unicodedata.is_normalized("NFC", char):
            spelled = fold_text(char, (step,))
            if spelled != char:
                changed[char] = spelled
    return changed


@functools.cache
def _compositions(step: str) -> tuple[tuple[str, str, str], ...]:
    """(composed, base, mark): a base and a mark NFC leaves apart, whose case NFC composes (upper "ı" and an
    acute: "Í"). The engine leaves them apart, Python composes them: the mark is an edge."""
    python, into = _python(step), dict[str, list[str]]()
    for char, spelled in python.items():
        if len(spelled) == 1:
            into.setdefault(spelled, []).append(char)
    found = []
    for char in _decomposable():
        parts = unicodedata.decomposition(char).split()
        if len(parts) != 2 or parts[0].startswith("<"):
            continue
        first, mark = chr(int(parts[0], 16)), chr(int(parts[1], 16))
        if unicodedata.normalize("NFC", first + mark) != char:
            continue
        found += [(char, base, mark) for base in into.get(first, ()) if unicodedata.is_normalized("NFC", base + mark)]
    return tuple(found)
