"""The guard list, for training jobs: keep the people who asked to be erased (or objected to
training) out of the next model, with neither the store nor their values.

    from worker.guard import Guard
    guard = Guard.load("guard.json", key=os.environ["ERASURE_SUBJECT_KEY"])
    table = guard.filter(table, column="email", type="email")   # without the guarded subjects' rows
    mask = guard.contains(table["user_id"], type="user_id")     # True where the value is guarded

The file `erasure guard export --out FILE` writes holds, per identifier type, the keyed hashes of
every guarded value (HMAC-SHA256 under a key derived from the worker's subject key, of
`TYPE \\0 VALUE`) and the type's fold. A value looked up is normalized as intake normalizes that
type (NFC, then its steps; an integer as its canonical decimal text), then hashed: nothing in the
file names a person, and without the key it tells nothing. Each distinct value is hashed once,
however many rows hold it: a column's distinct values (a dictionary-encoded column's dictionary)
are hashed, then the rows holding the few guarded ones are found as any filter by a set finds them.

This module imports only pyarrow, the standard library, connectors.normalize and connectors.arrow_fold,
so a training job can use it with the package installed and nothing configured: no store, no secrets
but the key."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.arrow_fold import fold_array
from connectors.normalize import Fold, fold_text, parse_steps

FORMAT = 1
LABEL = b"erasure-worker/guard"  # the HKDF label of worker.keys.GUARD: the key KeyRing.guard_key derives
HEX_DIGEST = frozenset("0123456789abcdef")


class GuardError(ValueError):
    """A guard list that cannot be used: unreadable, of another format, or exported under another key."""


def derive_key(subject_key: str | bytes) -> bytes:
    """The guard key from the subject key (text, or its bytes): HKDF-SHA256 (RFC 5869, no salt), as
    worker.keys derives it."""
    secret = subject_key.encode() if isinstance(subject_key, str) else bytes(subject_key)
    if not secret:
        raise GuardError("key: the subject key is empty")
    pseudo_random = hmac.digest(bytes(32), secret, "sha256")
    return hmac.digest(pseudo_random, LABEL + b"\x01", "sha256")


def key_id(key: bytes) -> str:
    """The short id of a guard key, as an exported file names it."""
    return hashlib.sha256(key).hexdigest()[:8]


class Guard:
    """A guard list in memory: per identifier type, the digests of its guarded values and its fold."""

    def __init__(self, key: bytes, digests: Mapping[str, Collection[bytes]], folds: Mapping[str, Fold]) -> None:
        self._mac = _hmac_sha256(key)
        self._digests = dict(digests)
        self._folds = {id_type: tuple(folds.get(id_type, ())) for id_type in self._digests}

    @classmethod
    def load(cls, path: Any, *, key: str | bytes) -> Guard:
        """The guard list exported to `path`; `key` is the worker's subject key (ERASURE_SUBJECT_KEY, or
        `subject` in its key file). GuardError, in one line, if the file was exported under another key."""
        guard_key = derive_key(key)
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except OSError as exc:
            raise GuardError(f"{path}: cannot read the guard list: {exc.strerror or exc}") from None
        except ValueError:
            raise GuardError(f"{path}: not a guard list (not JSON)") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT or not isinstance(raw.get("types"), dict):
            raise GuardError(f"{path}: not a guard list of format {FORMAT} (`erasure guard export` writes one)")
        if raw.get("key_id") != key_id(guard_key):
            raise GuardError(f"{path}: exported under guard key {str(raw.get('key_id'))[:16]!r}, but the key given "
                             f"derives {key_id(guard_key)!r}: give the subject key of the worker that exported it")
        folds = raw.get("folds", {})
        digests, steps = {}, {}
        for id_type, listed in raw["types"].items():
            if not isinstance(listed, list) or not all(_is_digest(d) for d in listed):
                raise GuardError(f"{path}: types.{id_type}: a list of 64 hex digits each")
            digests[id_type] = frozenset(bytes.fromhex(d) for d in listed)
            given = folds.get(id_type, []) if isinstance(folds, dict) else None
            try:
                steps[id_type] = parse_steps(given) if given else ()
            except ValueError as exc:
                raise GuardError(f"{path}: folds.{id_type}: {exc}") from None
        return cls(guard_key, digests, steps)

    @property
    def types(self) -> dict[str, int]:
        """How many values of each identifier type are guarded."""
        return {id_type: len(found) for id_type, found in sorted(self._digests.items())}

    def digest(self, value: str, *, type: str) -> bytes:
        """The keyed hash of one value of a type, normalized as intake normalizes that type."""
        return self._mac(f"{type}\0{fold_text(value, self._fold(type))}".encode("utf-8", "surrogatepass"))

    def contains(self, values: Any, *, type: str) -> pa.BooleanArray:
        """True where a value (of an Array, ChunkedArray or list of str or int) is guarded; a null is not."""
        self._fold(type)
        array = _arrow(values)
        if pa.types.is_dictionary(array.type):
            return self._contains_encoded(array, type)
        distinct = pc.unique(array)  # each distinct value hashed once, however many rows hold it
        guarded = distinct.filter(self._hits(distinct, type))
        if not len(guarded):
            return pa.repeat(pa.scalar(False), len(array))
        mask = pc.is_in(array, value_set=guarded)  # as cheap as any filter by a set: a few values, in the clear
        return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask

    def filter(self, table: Any, *, column: str, type: str) -> Any:
        """The table (a pyarrow Table or RecordBatch, or a pandas DataFrame) without the rows whose
        `column` holds a guarded value of `type`."""
        if isinstance(table, pa.Table | pa.RecordBatch):
            if column not in table.column_names:
                raise KeyError(f"column {column!r} is not in the table")
            return table.filter(pc.invert(self.contains(table.column(column), type=type)))
        pandas = _pandas()
        if pandas is None or not isinstance(table, pandas.DataFrame):
            raise TypeError(f"filter: a pyarrow Table or a pandas DataFrame, not {type_name(table)}")
        if column not in table.columns:
            raise KeyError(f"column {column!r} is not in the DataFrame")
        mask = self.contains(pa.Array.from_pandas(table[column]), type=type)
        return table[~mask.to_numpy(zero_copy_only=False)]

    def _fold(self, id_type: str) -> Fold:
        if id_type not in self._folds:
            raise KeyError(f"type {id_type!r} is not in the guard list (it has: {', '.join(sorted(self._folds))})")
        return self._folds[id_type]

    def _contains_encoded(self, array: pa.Array | pa.ChunkedArray, id_type: str) -> pa.BooleanArray:
        """contains() of a dictionary-encoded column: its dictionaries' values hashed, then taken by index.
        Parquet gives each row group's chunks a dictionary of their own, mostly the same values."""
        chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
        if not chunks:
            return pa.array([], pa.bool_())
        dictionaries = {_where(chunk.dictionary): chunk.dictionary for chunk in chunks}
        if len(dictionaries) == 1:
            only = next(iter(dictionaries.values()))
            hits = {_where(only): self._hits(only, id_type)}
        else:  # the values of all of them, each hashed once; then the few guarded ones sought in each
            distinct = pc.unique(pa.concat_arrays(list(dictionaries.values())))
            guarded = distinct.filter(self._hits(distinct, id_type))
            hits = {at: pc.is_in(values, value_set=guarded) for at, values in dictionaries.items()}
        return pa.concat_arrays([_take(hits[_where(chunk.dictionary)], chunk.indices) for chunk in chunks])

    def _hits(self, distinct: pa.Array, id_type: str) -> pa.BooleanArray:
        """For each of these (distinct) values, whether it is guarded."""
        digests, mac = self._digests[id_type], self._mac
        if not digests or not len(distinct):
            return pa.repeat(pa.scalar(False), len(distinct))
        return pa.array([message is not None and mac(message) in digests
                         for message in _messages(distinct, id_type, self._folds[id_type])], pa.bool_())


def _hmac_sha256(key: bytes) -> Callable[[bytes], bytes]:
    """HMAC-SHA256 (RFC 2104) under one key, its padded key's states hashed once: per message this is
    three times as fast as hmac.digest, which starts from the key each time."""
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def mac(message: bytes, inner_copy: Any = inner.copy, outer_copy: Any = outer.copy) -> bytes:
        first = inner_copy()
        first.update(message)
        second = outer_copy()
        second.update(first.digest())
        return second.digest()  # type: ignore[no-any-return]

    return mac


def _messages(values: pa.Array, id_type: str, fold: Fold) -> list[bytes | None]:
    """What the guard hashes for each value: `TYPE \\0 VALUE`, the value's text folded by the type's
    fold, an integer (or a float or decimal equal to one) as its canonical decimal text; None for what
    identifies nobody."""
    kind = values.type
    if pa.types.is_string_view(kind) or pa.types.is_binary_view(kind):
        values = values.cast(pa.string() if pa.types.is_string_view(kind) else pa.binary())
        kind = values.type
    if pa.types.is_integer(kind):
        texts = values.cast(pa.string())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        texts = fold_array(values, fold)
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        texts = fold_array(pa.array([_utf8(raw) for raw in values.to_pylist()], pa.string()), fold)
    elif pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        texts = pa.array([_whole(number) for number in values.to_pylist()], pa.string())
    elif pa.types.is_null(kind):
        return [None] * len(values)
    else:
        raise TypeError(f"values of type {kind}: the guard looks up text or integers")
    joined = pc.binary_join_element_wise(pa.scalar(f"{id_type}\0", texts.type), texts, pa.scalar("", texts.type))
    return joined.cast(pa.large_binary() if pa.types.is_large_string(texts.type) else pa.binary()).to_pylist()


def _whole(number: float | Decimal | None) -> str | None:
    """A float or decimal equal to an integer, as that integer's text (an int column read with nulls by
    pandas is float); None for any other."""
    if number is None or not (number == number) or number in (float("inf"), float("-inf")):
        return None
    return str(int(number)) if number == int(number) else None


def _utf8(raw: bytes | None) -> str | None:
    try:
        return None if raw is None else raw.decode()
    except UnicodeDecodeError:
        return None  # no value a request carries is such bytes


def _arrow(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    try:
        return pa.array(list(values) if isinstance(values, Sequence) and not isinstance(values, str) else values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        raise TypeError("values: an Array, a ChunkedArray or a list of str or of int") from None


def _where(dictionary: pa.Array) -> tuple[int, ...]:
    """Where a dictionary's data lies: chunks that share one share this."""
    return (dictionary.offset, len(dictionary), *(b.address if b is not None else 0 for b in dictionary.buffers()))


def _take(hits: pa.BooleanArray, indices: pa.Array) -> pa.BooleanArray:
    return pc.fill_null(pc.take(hits, indices), False)


def _is_digest(text: Any) -> bool:
    return isinstance(text, str) and len(text) == 64 and set(text) <= HEX_DIGEST


def _pandas() -> Any:
    try:
        import pandas  # optional: only to filter a pandas DataFrame; a training job may not have it
    except ImportError:
        return None
    return pandas


def type_name(value: Any) -> str:
    """The qualified name of a value's type, for an error message."""
    return f"{type(value).__module__}.{type(value).__qualname__}"
