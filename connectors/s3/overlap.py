"""Which key templates of one s3 system could render one key for two people, refused at start-up.

Values never hold a '/' (intake refuses them for a system that templates them), so a rendered key has
its template's path segments, and two renders can only meet segment by segment. A segment holding two
placeholders cannot tell where one value ends (`{user_id}-{email}/`: user 1 with email 2-3@x and user 1-2
with email 3@x). Two templates collide when, over the segments they share, each literal meets an equal
literal or a placeholder that could hold it, and no placeholder is pinned to the same type at the same
place in both: then a value equal to the other's literal (`users/{id}/` and `users/archive/{id}/`: user
"archive"), or a value written around the other's affixes (`u/{id}/` and `u/x{id}/`: users "x1" and "1"),
reaches another person's keys. `avatars/{id}/` and `avatars/{id}/thumbs/` pin `{id}` alike: one person."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from connectors.base import Template


@dataclass(frozen=True)
class Segment:
    """One path segment: a literal, or a placeholder with the literal text before and after it."""

    before: str
    field: str | None = None
    after: str = ""


def segments(template: Template, prefix: bool) -> list[Segment] | None:
    """The template's path segments (a prefix's trailing '/' closes its last one); None if a segment holds
    two placeholders."""
    found: list[Segment] = []
    before, field, after = "", None, ""
    for literal, name in template.parts:
        for i, piece in enumerate(literal.split("/")):
            if i:
                found.append(Segment(before, field, after))
                before, field, after = "", None, ""
            if field is None:
                before += piece
            else:
                after += piece
        if name:
            if field is not None:
                return None
            field = name
    found.append(Segment(before, field, after))
    return found[:-1] if prefix else found


def collide(mine: list[Segment], mine_prefix: bool, theirs: list[Segment], their_prefix: bool) -> bool:
    """Whether a render of `mine` for one person could take an object of `theirs` for another."""
    if mine_prefix:  # every object whose first segments are mine; theirs: an exact key needs one more
        shared = len(mine) if not their_prefix else min(len(mine), len(theirs))
        if not their_prefix and len(theirs) <= len(mine):
            return False
    elif their_prefix:  # my exact key lying under their prefix
        if len(mine) <= len(theirs):
            return False
        shared = len(theirs)
    else:
        if len(mine) != len(theirs):
            return False
        shared = len(mine)
    pinned = False
    for a, b in zip(mine[:shared], theirs[:shared], strict=True):
        if a.field is None and b.field is None:
            if a.before != b.before:
                return False
        elif a.field is None or b.field is None:
            literal, holder = (a, b) if a.field is None else (b, a)
            text = literal.before
            fits = text.startswith(holder.before) and text.endswith(holder.after)
            if not fits or len(text) <= len(holder.before) + len(holder.after):
                return False
        elif not (_ends_meet(a.before, b.before, str.startswith) and _ends_meet(a.after, b.after, str.endswith)):
            return False  # `x{id}` never meets `y{id}`
        elif (a.field, a.before, a.after) == (b.field, b.before, b.after):
            pinned = True  # one value at one place: whoever it is, it is one person
    return not pinned


def _ends_meet(one: str, other: str, meets: Callable[[str, str], bool]) -> bool:
    """Whether two affixes can close one text: one starts (or ends) with the other."""
    return meets(one, other) or meets(other, one)
