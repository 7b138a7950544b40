"""Connector kinds are plugins: the entry-point group `erasure.connectors` names each kind and its
connector class (`sql = "connectors.sql.connector:SqlConnector"`), as SQLAlchemy finds dialects.
The built-in kinds are declared the same way in pyproject.toml, and another distribution adds a
kind by declaring one: nothing here changes. Kinds are listed without being imported; a kind's
module is imported when a config names it, so an SQL-only worker never loads boto3 or pyarrow."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from connectors.base import Connector
from connectors.errors import ConfigError

GROUP = "erasure.connectors"
KIND_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # a kind names a queue: erasure.<kind>


@dataclass(frozen=True)
class Kind:
    """One connector kind as an installed distribution declares it."""

    name: str
    target: str  # "module:Class"
    distribution: str
    version: str

    def load(self) -> type[Connector]:
        """The connector class, imported now; ConfigError if it cannot be or is no connector."""
        return _load(self.name, self.target, self.distribution)

    def origin(self) -> dict[str, str]:
        """Where the kind comes from, as the audit trail records it."""
        return {"distribution": self.distribution, "version": self.version}


@functools.cache
def kinds() -> dict[str, Kind]:
    """Every connector kind the installed distributions declare, by name, none imported. A name
    declared by two distributions, or one unfit for a queue, is a ConfigError naming them."""
    found: dict[str, Kind] = {}
    clashes: dict[str, list[str]] = {}
    for point in entry_points(group=GROUP):
        kind = _kind(point)
        if not KIND_NAME.fullmatch(kind.name):
            raise ConfigError(f"connector kind {kind.name!r} of {kind.distribution}: a kind is a lower-case name "
                              "(letters, digits, _), as it names the queue erasure.<kind>")
        other = found.get(kind.name)
        if other is not None and (other.distribution, other.target) != (kind.distribution, kind.target):
            clashes.setdefault(kind.name, [f"{other.distribution} ({other.target})"]).append(
                f"{kind.distribution} ({kind.target})")
        found.setdefault(kind.name, kind)
    if clashes:
        name, claims = next(iter(sorted(clashes.items())))
        raise ConfigError(f"connector kind {name!r} is declared by more than one distribution: {' and '.join(claims)}; "
                          "uninstall one of them")
    return dict(sorted(found.items()))


def kind(name: str) -> Kind:
    """The kind of that name; ConfigError listing the known ones if none."""
    known = kinds()
    if name not in known:
        raise ConfigError(f"unknown kind {name!r} (known: {', '.join(known)})")
    return known[name]


def connector_class(name: str) -> type[Connector]:
    """The connector class of a kind, imported on first use."""
    return kind(name).load()


def reload() -> None:
    """Forget what was discovered: a distribution installed since is found on the next look."""
    kinds.cache_clear()
    _load.cache_clear()


def _kind(point: EntryPoint) -> Kind:
    dist = point.dist
    return Kind(point.name, point.value, dist.name if dist else "?", dist.version if dist else "?")


@functools.cache
def _load(name: str, target: str, distribution: str) -> type[Connector]:
    module, _, attribute = target.partition(":")
    point = EntryPoint(name, target, GROUP)
    try:
        loaded = point.load()
    except ImportError as exc:
        raise ConfigError(f"connector kind {name!r} of {distribution}: cannot import {module} "
                          f"({exc.name or exc} is missing)") from exc
    except AttributeError as exc:
        raise ConfigError(f"connector kind {name!r} of {distribution}: {module} has no {attribute}") from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Connector)):
        raise ConfigError(f"connector kind {name!r} of {distribution}: {target} is not a Connector class")
    return loaded
