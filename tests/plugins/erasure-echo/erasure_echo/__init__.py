"""The `echo` kind: a text file with one identifier per line; erasing a subject removes the lines
that are exactly one of its values, keeping every other line as it was."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from connectors.base import ConfigReader, Connector, Outcome, Subject, SystemConfig
from connectors.errors import PermanentError


@dataclass(frozen=True)
class EchoConfig(SystemConfig):
    """A file and the identifier type its lines hold."""

    file: str = ""
    holds: str = ""

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "echo"`."""
        reader.only("name", "kind", "file", "holds")
        return cls(name=reader.text("name"), kind="echo", file=reader.text("file"),
                   holds=reader.identifier("holds", reader.raw.get("holds")))

    @property
    def identifier_types(self) -> frozenset[str]:
        """The one type its lines hold."""
        return frozenset({self.holds})


class EchoConnector(Connector):
    """Removes a subject's lines from the file."""

    kind = "echo"
    config_class = EchoConfig
    config: EchoConfig

    def erase(self, subject: Subject) -> Outcome:
        """Write the file again without the subject's lines."""
        lines, mine = self._split(subject)
        if mine:
            temp = Path(self.config.file + ".tmp")
            temp.write_text("".join(lines))
            os.replace(temp, self.config.file)
        return Outcome(mine, {"file": Path(self.config.file).name, "lines": mine})

    def verify(self, subject: Subject) -> int:
        """The subject's lines still there."""
        return self._split(subject)[1]

    def _split(self, subject: Subject) -> tuple[list[str], int]:
        values = set(subject.values(self.config.holds))
        try:
            text = Path(self.config.file).read_text().splitlines(keepends=True)
        except OSError as exc:
            raise PermanentError(f"echo {self.config.name}: cannot read its file") from exc
        kept = [line for line in text if line.rstrip("\n") not in values]
        return kept, len(text) - len(kept)
