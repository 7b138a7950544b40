"""The masks a `set` may put in place of a stored value: `{ hash = true }`, a stable pseudonym (the
HMAC-SHA256 of the stored text under the worker's pseudonym key, as hex), and `{ random = true }`,
random letters and digits; both cut to the column's length. Each ends in a keyed check of what comes
before it, so a masked value is known for one: a second erasure or a replay never hashes a pseudonym
again (joins keep working), and verify counts only the values not yet masked."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from connectors.sql.config import Mask

CHECK = 8  # hex characters of the keyed check that ends every mask (a stored value passes by chance 1 in 16^8)
SHORTEST = 16  # a column that holds fewer characters cannot hold a pseudonym worth the name and its check
HASH_LENGTH = 64  # a pseudonym's length where the column sets none (TEXT): the whole HMAC-SHA256 hex
RANDOM_LENGTH = 32  # a random value's length where the column sets none
ALPHABET = string.ascii_letters + string.digits
NOT_TEXT = (sa.Enum, mysql.SET)  # String subclasses that take a closed list of values


def unfit(mask: Mask, column: sa.Column[Any], dialect: str) -> str | None:
    """Why the column cannot take the mask (not text, or too short), or None."""
    kind = column.type
    untyped = dialect == "sqlite" and isinstance(kind, sa.types.NullType)  # SQLite: a column declared with no type
    if not untyped and (not isinstance(kind, sa.String) or isinstance(kind, NOT_TEXT)):
        return f"a {mask.how} needs a text column, not {kind.__class__.__name__}"
    length = getattr(kind, "length", None)
    if length is not None and length < SHORTEST:
        return f"holds at most {length} characters; a {mask.how} needs {SHORTEST}"
    return None


def mask_length(mask: Mask, column: sa.Column[Any]) -> int:
    """How long the column's masks are: its length (a pseudonym at most 64), or the default where it has none."""
    length: int | None = getattr(column.type, "length", None)
    if mask.how == "hash":
        return min(length or HASH_LENGTH, HASH_LENGTH)
    return length or RANDOM_LENGTH


@dataclass(frozen=True)
class Masker:
    """Makes and knows masks under one key (the worker's pseudonym key)."""

    key: bytes

    def mask(self, mask: Mask, stored: Any, length: int) -> Any:
        """The stored value masked: NULL stays NULL, a value masked already stays as it is."""
        if stored is None or self.masked(stored):
            return stored
        if mask.how == "hash":
            body = hmac.new(self.key, str(stored).encode(), hashlib.sha256).hexdigest()[: length - CHECK]
        else:
            body = "".join(secrets.choice(ALPHABET) for _ in range(length - CHECK))
        return body + self._check(body)

    def masked(self, stored: Any) -> bool:
        """Whether a stored value is a mask this key made (NULL needs none)."""
        if stored is None:
            return True
        text = stored.rstrip(" ") if isinstance(stored, str) else ""  # a CHAR(n) column pads with spaces
        body, check = text[:-CHECK], text[-CHECK:]
        return len(text) >= SHORTEST and hmac.compare_digest(check, self._check(body))

    def _check(self, body: str) -> str:
        """The keyed check of a mask's body: a label of its own, so it is never the pseudonym of any value."""
        return hmac.new(self.key, b"\0check\0" + body.encode(), hashlib.sha256).hexdigest()[:CHECK]
