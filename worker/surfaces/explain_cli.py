"""`erasure explain REQUEST_ID [--json]`: a request's story, oldest first, and in its last line what it
waits for now and what to do, with the runbook section (worker.engine.explain). Errors and exit codes
are the `erasure` command's (cli.main): an unknown request is 3, as for `erasure status`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker import config as settings
from worker.engine import explain
from worker.queue.dispatch import celery_runtime
from worker.surfaces.render import table


def cmd_explain(args: argparse.Namespace) -> None:
    explained = explain.explain(celery_runtime(settings.load(settings.config_path(args.config))), args.request_id)
    if args.json:
        print(json.dumps(explained.to_json(), indent=2, ensure_ascii=False))
    else:
        print(show(explained))


def show(explained: explain.Explained) -> str:
    """The story for people: a header, one row per event, and the one line of what to do now."""
    shown = explained.to_json()
    return "\n".join([
        f"request   {explained.request_id}  {explained.status}",
        f"subject   {explained.subject_ref}",
        f"received  {shown['received_at']}   deadline {shown['deadline']}", "",
        table(["AT", "SYSTEM", "EVENT", "WHAT"],
              [[e["at"], e.get("system"), e["event"].replace("_", " "), e["detail"]] for e in shown["events"]]), "",
        f"now: {explained.now.line()}",
    ])


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`erasure explain REQUEST_ID [--json]` on the command line's parser."""
    text = "a request's story, oldest first, and what it waits for now and what to do"
    parser = sub.add_parser("explain", parents=[common], help=text, description=text)
    parser.add_argument("request_id")
    parser.add_argument("--json", action="store_true", help="print the story and the diagnosis as JSON")
    parser.set_defaults(handler=cmd_explain)
