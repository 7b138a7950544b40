"""The `manual` kind's configuration: what a person is told to do, and the identifier types they
look the subject up by::

    [[systems]]
    name = "support-desk"
    kind = "manual"
    uses = ["email"]            # optional: every declared identifier type when absent
    instructions = '''
    In the helpdesk, search the customer by email, delete their tickets and attachments,
    then empty the trash. Count the tickets deleted.'''

The instructions are the same text for every request: they name no identifier (a placeholder such
as `{email}` is refused), since a person sees the subject's identifiers only by asking for them
(`erasure tasks show ... --reveal`), which the audit trail records."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Self

from connectors.base import ConfigReader, SystemConfig

INSTRUCTIONS_LIMIT = 2000
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# characters that reorder how the text around them is shown: instructions must read as they are stored
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class ManualConfig(SystemConfig):
    """A system erased by a person following `instructions`, who looks the subject up by `uses`."""

    uses: tuple[str, ...] = ()
    instructions: str = ""

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "manual"`: `instructions` (required) and `uses` (optional)."""
        reader.only("name", "kind", "uses", "instructions")
        if "uses" in reader.raw:
            listed = reader.require("uses", list)
            if not listed:
                raise reader.error("uses", "names no identifier type (leave it out for every declared type)")
            uses = tuple(dict.fromkeys(reader.identifier("uses", u) for u in listed))
        else:
            uses = tuple(sorted(reader.identifier_types))
        return cls(name=reader.text("name"), kind="manual", uses=uses,
                   instructions=_instructions(reader))

    @property
    def identifier_types(self) -> frozenset[str]:
        """The types the person looks the subject up by: a request with none of them skips this system."""
        return frozenset(self.uses)


def _instructions(reader: ConfigReader) -> str:
    """The instructions: plain text (lines and tabs allowed), at most INSTRUCTIONS_LIMIT characters,
    with no placeholder of an identifier type."""
    text = reader.text("instructions").strip()
    if len(text) > INSTRUCTIONS_LIMIT:
        raise reader.error("instructions", f"at most {INSTRUCTIONS_LIMIT} characters, got {len(text)}")
    if any(c in BIDI_CONTROLS or (unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t") for c in text):
        raise reader.error("instructions", "plain text: no control characters but line breaks and tabs")
    named = [name for name in PLACEHOLDER.findall(text) if name in reader.identifier_types]
    if named:
        raise reader.error("instructions", f"names the identifier {{{named[0]}}}: instructions are the same for "
                                           "every request; the person sees the subject's identifiers with "
                                           "`erasure tasks show REQUEST_ID --system NAME --reveal --by NAME`")
    return text
