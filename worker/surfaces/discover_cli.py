"""`erasure discover`: a draft erasure.toml from the schemas of databases and snapshot locations,
written to stdout or to a new file. Errors and exit codes are the `erasure` command's (cli.main):
2 for bad options, 1 for a source that cannot be read (named without its credentials)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from worker import config as settings
from worker.discover.draft import render
from worker.discover.identifiers import identifier_types
from worker.discover.run import discover
from worker.discover.snapshots import FORMATS
from worker.errors import InputError
from worker.identifiers import IdentifierType


def cmd_discover(args: argparse.Namespace) -> int:
    """Write the draft; 0 when written."""
    if not args.url and not args.snapshot:
        raise InputError("discover: give at least one --url or --snapshot")
    if len(args.format) not in ((1, len(args.snapshot)) if args.snapshot else (0,)):
        raise InputError("--format: give one for every --snapshot, or one for all of them")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.force:
        raise InputError(f"--out: {out} exists (add --force to replace it)")
    formats = args.format * len(args.snapshot) if len(args.format) == 1 else args.format
    draft = discover(args.url, list(zip(args.snapshot, formats, strict=True)),
                     identifier_types(args.identifier, _configured(args.config)))
    text = render(draft)
    if out is None:
        sys.stdout.write(text)
        return 0
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if args.force else os.O_EXCL), 0o644)
    with os.fdopen(descriptor, "w", encoding="utf-8") as sink:
        sink.write(text)
    risks = sum(len(db.plan.risks) for db in draft.databases) + sum(len(s.risks) for s in draft.snapshots)
    print(f"wrote {out}: {len(draft.databases)} database(s), {len(draft.snapshots)} snapshot location(s), "
          f"{risks} column(s) on the risk list")
    return 0


def _configured(given: str | None) -> dict[str, IdentifierType]:
    """The [identifiers] of the config --config (or $ERASURE_CONFIG, or ./erasure.toml) names, if it exists."""
    path = settings.config_path(given)
    if not path.exists():
        if given:
            raise InputError(f"--config: {given} does not exist")
        return {}
    return dict(settings.load(path).identifiers)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`erasure discover` on the command line's parser."""
    text = "draft an erasure.toml from the schemas of databases and snapshot locations, with a risk list"
    parser = sub.add_parser("discover", parents=[common], help=text, description=text)
    parser.add_argument("--url", action="append", default=[], metavar="SQLALCHEMY_URL",
                        help="a database to read, read-only (repeatable)")
    parser.add_argument("--snapshot", action="append", default=[], metavar="LOCATION",
                        help="a snapshot location: a folder of snapshot folders, s3://BUCKET/PREFIX/, or a Delta table")
    parser.add_argument("--format", action="append", default=[], choices=FORMATS,
                        help="the format of each --snapshot, or one for all")
    parser.add_argument("--identifier", action="append", default=[], metavar="TYPE=COLUMN_HINT",
                        help="where an identifier type is stored: a column name, or table.column for an identity "
                             "table (repeatable; default: email and user_id, found by name)")
    parser.add_argument("--out", metavar="FILE", help="write the draft there (default: stdout)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.set_defaults(handler=cmd_discover)
