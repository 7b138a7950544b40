"""A fake system for orchestration tests and benchmarks: no I/O, failure knobs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Self

from connectors.base import ConfigReader, Connector, Journal, Outcome, Preview, Subject, SystemConfig
from connectors.errors import ConnectorError, PermanentError, TransientError


@dataclass(frozen=True)
class StubConfig(SystemConfig):
    """A stub system: which identifier types it holds and how it misbehaves."""

    uses: tuple[str, ...] = ()
    items: int = 1
    fail_transiently: int = 0
    fail_permanently: bool = False
    delay_seconds: float = 0.0
    locked_for_seconds: float = 0.0
    batches: bool = False
    refuse_values: tuple[str, ...] = ()  # a subject holding one fails alone in a pass of many

    @classmethod
    def read(cls, reader: ConfigReader) -> Self:
        """Parse `kind = "stub"`."""
        reader.only("name", "kind", "uses", "items", "fail_transiently", "fail_permanently", "delay_seconds",
                    "locked_for_seconds", "batches", "refuse_values")
        uses = reader.require("uses", list)
        if not uses:
            raise reader.error("uses", "names no identifier type")
        delay = reader.optional("delay_seconds", (int, float), 0.0)  # type: ignore[arg-type]
        locked = reader.optional("locked_for_seconds", (int, float), 0.0)  # type: ignore[arg-type]
        return cls(
            name=reader.text("name"),
            kind="stub",
            uses=tuple(reader.identifier("uses", u) for u in uses),
            items=reader.optional("items", int, 1),
            fail_transiently=reader.optional("fail_transiently", int, 0),
            fail_permanently=reader.optional("fail_permanently", bool, False),
            delay_seconds=float(delay),
            locked_for_seconds=float(locked),
            batches=reader.optional("batches", bool, False),
            refuse_values=tuple(str(v) for v in reader.optional("refuse_values", list, [])),
        )

    @property
    def identifier_types(self) -> frozenset[str]:
        """The types listed in `uses`."""
        return frozenset(self.uses)


class StubConnector(Connector):
    """Pretends to erase `items` items per subject, once; fails as its knobs say. With
    `locked_for_seconds`, one more item is kept under a lock that long, reported as exempt.
    With `batches`, the worker coalesces requests into one erase_many, whose sizes `passes` keeps; a subject
    holding one of `refuse_values` fails alone there, the others erased."""

    kind = "stub"
    config_class = StubConfig
    config: StubConfig

    def __init__(self, config: StubConfig) -> None:
        super().__init__(config)
        self.calls = 0
        self.batches = config.batches
        self.passes: list[int] = []
        self.erased: set[tuple[tuple[str, tuple[str, ...]], ...]] = set()
        self.locked_until: dict[tuple[tuple[str, tuple[str, ...]], ...], datetime] = {}

    def erase(self, subject: Subject) -> Outcome:
        """Count a call, fail if told to, else erase the subject the first time it is seen."""
        self.calls += 1
        if self.config.delay_seconds:
            time.sleep(self.config.delay_seconds)
        if self.config.fail_permanently:
            raise PermanentError(f"stub {self.config.name} refuses for good")
        if self.calls <= self.config.fail_transiently:
            raise TransientError(f"stub {self.config.name} is briefly unavailable")
        key = self._key(subject)
        if key is None:
            return Outcome(0, {})
        items = 0 if key in self.erased else self.config.items
        self.erased.add(key)
        if self.config.locked_for_seconds:
            now = datetime.now(UTC)
            until = self.locked_until.setdefault(key, now + timedelta(seconds=self.config.locked_for_seconds))
            if now < until:
                return Outcome(items, {}, exempt_reason=f"stub lock until {until:%Y-%m-%dT%H:%M:%SZ}",
                               recheck_at=until)
            if self.locked_until.pop(key, None) is not None:
                items += 1
        return Outcome(items, {})

    def erase_many(self, subjects: Sequence[Subject],
                   journal: Journal | None = None) -> Sequence[Outcome | ConnectorError]:
        """One pass over the subjects, its size kept in `passes`."""
        self.passes.append(len(subjects))
        refused = PermanentError(f"stub {self.config.name} refuses this subject")
        return [refused if subject.all_values() & set(self.config.refuse_values) else self.erase(subject)
                for subject in subjects]

    def verify(self, subject: Subject) -> int:
        """The stub's items for a subject it holds and has not erased yet."""
        key = self._key(subject)
        if key is None:
            return 0
        return (0 if key in self.erased else self.config.items) + (1 if key in self.locked_until else 0)

    def _key(self, subject: Subject) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
        held = tuple((t, subject.values(t)) for t in self.config.uses if subject.values(t))
        return held or None

    def preview(self, subject: Subject) -> Preview:
        """The items erase() would report now: what verify counts (no I/O)."""
        items = self.verify(subject)
        return Preview(looked=True, items=items, counts={"items": items})
