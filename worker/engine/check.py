"""`erasure check`: every system of the config looked at read-only by its kind's probe
(`Connector.check`: tables and columns, buckets, snapshot files' schemas, servers), and every
resolver's query prepared on its system, never run. Each goes in a thread of its own with a time
limit, all at once, so a system that hangs costs the command its limit and no more; whatever a probe
raises becomes that system's problem, in one line without a secret. Nothing here writes anywhere."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors import registry
from connectors.base import Checked, Patterns, SystemConfig
from connectors.errors import one_line
from connectors.sql.probe import prepare
from worker.config import Config
from worker.errors import ErasureError
from worker.identifiers import Resolver

TIMEOUT = 20.0  # seconds each system and resolver may take


class CheckFailed(ErasureError):
    """A system or resolver did not pass the check (`erasure worker --check` refuses to start)."""


@dataclass(frozen=True)
class Result:
    """What the check found at one system, or at one resolver (`kind` "resolver", `label` what it maps)."""

    name: str
    kind: str
    found: Checked
    label: str = ""

    @property
    def ok(self) -> bool:
        """Whether nothing was found that would fail an erasure."""
        return self.found.ok

    def to_json(self) -> dict[str, Any]:
        """The system's, or the resolver's, entry of `erasure check --json`."""
        shown = {"ok": self.ok, "problems": list(self.found.problems), "notes": list(self.found.notes)}
        if self.kind != "resolver":
            return {"system": self.name, "kind": self.kind, **shown}
        return {"resolver": self.label, "system": self.name, **shown}


@dataclass(frozen=True)
class Report:
    """Every system's result, in config order, then every resolver's."""

    systems: tuple[Result, ...]
    resolvers: tuple[Result, ...]

    @property
    def ok(self) -> bool:
        """Whether every system and every resolver passed."""
        return all(result.ok for result in (*self.systems, *self.resolvers))

    @property
    def failed(self) -> list[Result]:
        """The systems and resolvers that did not pass."""
        return [result for result in (*self.systems, *self.resolvers) if not result.ok]

    def to_json(self) -> dict[str, Any]:
        """`erasure check --json`."""
        return {"ok": self.ok, "systems": [r.to_json() for r in self.systems],
                "resolvers": [r.to_json() for r in self.resolvers]}


def run(config: Config, timeout: float = TIMEOUT) -> Report:
    """Look at every system and resolver at once, each within `timeout` seconds."""
    patterns: Patterns = {name: kind.pattern for name, kind in config.identifiers.items()}
    probes: list[Callable[[], Checked]] = [_system_probe(system, patterns) for system in config.systems]
    probes += [_resolver_probe(config.system(r.system), r) for r in config.resolvers]
    found = _within(probes, timeout)
    systems = tuple(Result(s.name, s.kind, f) for s, f in zip(config.systems, found, strict=False))  # then resolvers
    resolvers = tuple(Result(r.system, "resolver", f, _label(i, r))
                      for i, (r, f) in enumerate(zip(config.resolvers, found[len(systems):], strict=True), 1))
    return Report(systems, resolvers)


def _label(index: int, resolver: Resolver) -> str:
    return f"resolver {index} ({resolver.from_type} -> {resolver.to_type})"


def _system_probe(system: SystemConfig, patterns: Patterns) -> Callable[[], Checked]:
    """One system's probe, by a connector of its own, closed afterwards."""

    def probe() -> Checked:
        connector = registry.connector_class(system.kind)(system)
        try:
            return connector.check(patterns)
        finally:
            connector.close()

    return probe


def _resolver_probe(system: SystemConfig, resolver: Resolver) -> Callable[[], Checked]:
    """One resolver's query prepared on its sql system (a resolver's system is sql: checked at load)."""

    def probe() -> Checked:
        connector: Any = registry.connector_class(system.kind)(system)  # sql's: a resolver's system is sql
        try:
            return prepare(connector, resolver.query, resolver.from_type)
        finally:
            connector.close()

    return probe


def _within(probes: list[Callable[[], Checked]], timeout: float) -> list[Checked]:
    """Each probe's findings, run side by side in daemon threads: one still running after `timeout`
    seconds is left to itself (it never holds the process at exit) and reported as hanging."""
    found: dict[int, Checked] = {}

    def run_one(index: int, probe: Callable[[], Checked]) -> None:
        try:
            found[index] = probe()
        except Exception as exc:  # any failure is the system's problem, not the command's
            found[index] = Checked((_problem(exc),))

    threads = [threading.Thread(target=run_one, args=(i, p), daemon=True, name=f"erasure-check-{i}")
               for i, p in enumerate(probes)]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hanging = Checked((f"no answer within {timeout:g} s: the system hangs or is unreachable",))
    return [found.get(i, hanging) for i in range(len(probes))]


def _problem(exc: Exception) -> str:
    """A probe's error as one line: the project's own as said, another with its type."""
    return one_line(exc) if isinstance(exc, ErasureError) else f"{type(exc).__name__}: {one_line(exc)}"
