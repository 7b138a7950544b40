"""The `manual` kind's connector: the worker never erases a manual system. Fan-out records it as an
open task and a person settles it (`erasure tasks done|not-found`, or the DPO page), so erase() and
verify() refuse, saying so, should anything call them."""

from __future__ import annotations

from connectors.base import Checked, Connector, Outcome, Patterns, Subject
from connectors.errors import PermanentError
from connectors.manual.config import ManualConfig


class ManualConnector(Connector):
    """A system a person erases by hand: nothing here touches it."""

    kind = "manual"
    config_class = ManualConfig
    config: ManualConfig

    def erase(self, subject: Subject) -> Outcome:
        """Refused: a person erases this system and settles its task."""
        raise PermanentError(self._by_hand())

    def verify(self, subject: Subject) -> int:
        """Refused: only the person who did the work can say what is left."""
        raise PermanentError(self._by_hand())

    def _by_hand(self) -> str:
        return (f"system {self.config.name} is erased by a person, not by the worker: "
                "its open tasks are settled with `erasure tasks done|not-found`")

    def check(self, patterns: Patterns | None = None) -> Checked:
        """Nothing to look at: a person erases this system."""
        return Checked(notes=("a person erases this system: nothing for the worker to reach",))
