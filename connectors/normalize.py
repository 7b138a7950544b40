"""How an identifier's value is normalized, on the request's side and on the stored side alike.

A value is first NFC-normalized (a composed and a decomposed "é" are one person), then put
through its type's steps in a fixed order: `trim` (leading and trailing ASCII whitespace, never
inner), then `lower` or `upper`, and composed again after a case step, so that a folded value
folds to itself. The request's value is folded here, in Python; a connector folds
the stored side the same way with its engine's functions (SQL, pyarrow), so `Mary.Smith@x` and a
stored `MARY.SMITH@x` are one person, while nothing else is: a fold never turns equality into
likeness (no LIKE, no wildcard, `_` and `%` are literals).

A column known to be stored already folded may say `match = "exact"`: its stored side is then
compared as it is, so a plain index serves it."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

STEPS = ("trim", "lower", "upper")  # applied in this order, after NFC
TRIM_CHARS = " \t\n\r\x0b\x0c"  # what `trim` removes at both ends: ASCII whitespace
Fold = tuple[str, ...]  # the steps of one identifier type, in STEPS order; () folds by NFC alone


def parse_steps(given: str | Sequence[str]) -> Fold:
    """The steps of `normalize = "lower"` or `normalize = ["trim", "lower"]`; ValueError says what is wrong."""
    names = [given] if isinstance(given, str) else list(given) if isinstance(given, list | tuple) else []
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError('a step or a list of steps: "none", "trim", "lower", "upper"')
    if names == ["none"]:
        return ()
    unknown = [name for name in names if name not in STEPS]
    if unknown:
        raise ValueError(f'unknown step {unknown[0]!r} (steps: "none" alone, or any of {", ".join(STEPS)})')
    if len(set(names)) != len(names):
        raise ValueError("a step is named twice")
    if "lower" in names and "upper" in names:
        raise ValueError("lower and upper exclude each other")
    return tuple(step for step in STEPS if step in names)


def describe(fold: Fold) -> str:
    """The steps as written in the config: "none", "lower", or ["trim", "lower"]."""
    if not fold:
        return "none"
    return fold[0] if len(fold) == 1 else "[" + ", ".join(f'"{step}"' for step in fold) + "]"


def fold_text(value: str, fold: Fold) -> str:
    """The value NFC-normalized, then put through the steps, and composed again after a case step: upper-
    casing "ΐ" gives "Ι", a diaeresis and an acute, which NFC composes to "Ϊ́"; left so, a stored "Ϊ́" would
    never match it, and folding the folded value would not give it back."""
    if value.isascii():  # NFC and Python's case rules leave ASCII as ASCII
        return _steps(value, fold)
    value = _steps(unicodedata.normalize("NFC", value), fold)
    return unicodedata.normalize("NFC", value) if "lower" in fold or "upper" in fold else value


def _steps(value: str, fold: Fold) -> str:
    for step in fold:
        if step == "trim":
            value = value.strip(TRIM_CHARS)
        elif step == "lower":
            value = value.lower()
        else:
            value = value.upper()
    return value
