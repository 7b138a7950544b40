"""`erasure locate` (and `submit --dry-run`, which prints the same) and `erasure export`: what an erasure
of a subject would take in each system, changing nothing, and the subject's records in one zip file
(Art. 15 access). Counts, templates and table names are printed, never a record or an identifier's
value. Errors and exit codes are the `erasure` command's (cli.main)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker import config as settings
from worker.engine import export, intake, locate
from worker.queue.dispatch import celery_runtime
from worker.runtime import Runtime
from worker.store.models import Scope
from worker.surfaces.render import table


def _runtime(args: argparse.Namespace) -> Runtime:
    return celery_runtime(settings.load(settings.config_path(args.config)))


def print_located(located: locate.Located, as_json: bool) -> None:
    """The locate object as JSON, or a table for people."""
    if as_json:
        print(json.dumps(located.to_json(), indent=2, ensure_ascii=False))
    else:
        print(show(located))


def show(located: locate.Located) -> str:
    """What an erasure would take, system by system, for people."""
    rows = [[look["system"], look["kind"], look["items"], _what(look["counts"]), look["error"] or look["note"]]
            for look in located.to_json()["systems"]]
    lines = [f"subject   {located.subject_ref}   scope {located.scope}",
             f"would take {located.items} item(s); nothing was changed", "",
             table(["SYSTEM", "KIND", "ITEMS", "WHAT", "NOTE"], rows)]
    for model in located.models:
        trained_on = ", ".join(model["snapshots"])
        lines.append(f"would flag model {model['model']} {model['version']}  trained on {trained_on}")
    return "\n".join(lines)


def _what(counts: dict[str, Any]) -> str | None:
    """A preview's counts in one line: rows per table, versions per template, rows per snapshot."""
    parts = [f"{name}={rows}" for name, rows in counts.get("tables", {}).items()]
    parts += [f"{name}={rows} kept" for name, rows in counts.get("retained", {}).items()]
    parts += [f"{tpl}={n['versions']} versions+{n['delete_markers']} markers"
              for tpl, n in counts.get("templates", {}).items() if isinstance(n, dict)]
    parts += [f"{snapshot}={n['rows']}" for snapshot, n in counts.get("snapshots", {}).items()]
    parts += [f"{e.get('template') or e.get('prefix') or e.get('key')}={e['removed']}"
              for section in ("keys", "scan", "hashes", "sets", "sorted_sets") for e in counts.get(section, [])]
    parts += [f"items={counts['items']}"] if "items" in counts else []
    return " ".join(parts) or None


def cmd_locate(args: argparse.Namespace) -> None:
    located = locate.locate(_runtime(args), intake.parse_subject_args(args.subject), args.scope)
    print_located(located, args.json)


def cmd_dry_run(args: argparse.Namespace) -> None:
    """`erasure submit --dry-run`: the submit's fields checked as a submit checks them, then `locate`."""
    intake.clean_text("requested_by", args.requested_by)
    intake.clean_text("idempotency_key", args.idempotency_key)
    located = locate.locate(_runtime(args), intake.parse_subject_args(args.subject), args.scope)
    print_located(located, args.json)


def cmd_export(args: argparse.Namespace) -> None:
    done = export.export(_runtime(args), intake.parse_subject_args(args.subject), args.out, args.with_objects)
    print(done.show())


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`erasure locate` and `erasure export` on the command line's parser."""
    text = "what an erasure of a subject would take in each system, changing nothing"
    found = sub.add_parser("locate", parents=[common], help=text, description=text)
    found.add_argument("--subject", action="append", required=True, metavar="TYPE=VALUE")
    found.add_argument("--scope", choices=[s.value for s in Scope], default=None,
                       help="training: only the systems an objection to training use would erase (default: all)")
    found.add_argument("--json", action="store_true", help="print the counts as JSON")
    found.set_defaults(handler=cmd_locate)
    text = "the subject's records from every system that can read them, in a new zip file (Art. 15 access)"
    made = sub.add_parser("export", parents=[common], help=text, description=text)
    made.add_argument("--subject", action="append", required=True, metavar="TYPE=VALUE")
    made.add_argument("--out", required=True, metavar="FILE.zip", help="a new file, written with mode 0600")
    made.add_argument("--with-objects", action="store_true", help="the S3 objects themselves, not only their list")
    made.set_defaults(handler=cmd_export)
