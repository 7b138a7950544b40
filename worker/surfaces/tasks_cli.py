"""`erasure tasks`: manual systems' open tasks for the people who do them. List them, show one (its
subject's identifiers only with --reveal, which the audit trail records with --by), and settle one as
done (items, evidence) or not found. Errors and exit codes are the `erasure` command's (cli.main)."""

from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any

from worker import config as settings
from worker.engine import manual_tasks
from worker.errors import InputError
from worker.queue.dispatch import celery_runtime
from worker.runtime import Runtime
from worker.store.models import utcnow
from worker.surfaces.render import table

INSTRUCTIONS_SHOWN = 60  # characters of a task's instructions in the list (`tasks show` has them all)


def _runtime(args: argparse.Namespace) -> Runtime:
    return celery_runtime(settings.load(settings.config_path(args.config)))


def cmd_tasks(args: argparse.Namespace) -> None:
    now, found = utcnow(), manual_tasks.open_tasks(_runtime(args))
    if args.json:
        print(json.dumps([task.to_json(now) for task in found], indent=2, ensure_ascii=False))
        return
    if not found:
        print("no open task")
        return
    print(table(["REQUEST", "SYSTEM", "DEADLINE", "LOOK UP BY", "INSTRUCTIONS"], [[
        t.request_id, t.system, t.to_json(now)["deadline"] + (" (overdue)" if t.deadline < now else ""),
        ",".join(t.identifier_types), textwrap.shorten(t.instructions, INSTRUCTIONS_SHOWN, placeholder=" ..."),
    ] for t in found]))


def cmd_tasks_show(args: argparse.Namespace) -> None:
    if args.reveal and args.by is None:
        raise InputError("--by: who is looking, required with --reveal (the audit trail records it)")
    rt = _runtime(args)
    task = manual_tasks.show(rt, args.request_id, args.system)
    shown = task.to_json(utcnow())
    lines = [f"request       {task.request_id}", f"system        {task.system}",
             f"received      {shown['received_at']}",
             f"deadline      {shown['deadline']}{'  (overdue)' if shown['overdue'] else ''}",
             f"look up by    {', '.join(task.identifier_types)}", "instructions",
             textwrap.indent(task.instructions, "  ")]
    if not args.reveal:
        lines.append("identifiers   not shown: add --reveal --by NAME (the audit trail records who asked)")
    else:
        revealed = manual_tasks.reveal(rt, args.request_id, args.system, args.by)
        lines += [f"{id_type:<13} {value}" for id_type, values in revealed.items() for value in values]
        lines.append("(revealed to you; recorded in the audit trail. Keep them out of the evidence.)")
    print("\n".join(lines))


def cmd_tasks_done(args: argparse.Namespace) -> None:
    status = manual_tasks.done(_runtime(args), args.request_id, args.system, args.items, args.evidence, args.by)
    print(f"{args.request_id}  {args.system} erased by hand ({args.items} item(s)), request {status}")


def cmd_tasks_not_found(args: argparse.Namespace) -> None:
    status = manual_tasks.not_found(_runtime(args), args.request_id, args.system, args.evidence, args.by)
    print(f"{args.request_id}  {args.system} not found by hand, request {status}")


def add_parser(sub: Any, common: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    """`erasure tasks [--json]` and its subcommands show, done and not-found, on the command line's parser."""
    text = "manual systems' open tasks, for the people who erase them"
    tasks = sub.add_parser("tasks", parents=[common], help=text, description=text)
    tasks.add_argument("--json", action="store_true", help="print the tasks as JSON")
    tasks.set_defaults(handler=cmd_tasks)
    # --config here defaults to nothing, so that `tasks --config X show ...` keeps the X given before it
    quiet_config = parser_class(add_help=False)
    quiet_config.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    tasks_sub = tasks.add_subparsers(dest="tasks_command", parser_class=parser_class,
                                     metavar="{show,done,not-found}")
    made = {}
    for name, handler, help_text in (
            ("show", cmd_tasks_show, "one open task; with --reveal, the subject's identifiers (audited)"),
            ("done", cmd_tasks_done, "settle a task: the items were erased by hand"),
            ("not-found", cmd_tasks_not_found, "settle a task: the subject was looked for and not found")):
        made[name] = tasks_sub.add_parser(name, parents=[quiet_config], help=help_text, description=help_text)
        made[name].add_argument("request_id")
        made[name].add_argument("--system", required=True, metavar="S", help="the manual system")
        made[name].set_defaults(handler=handler)
    made["show"].add_argument("--reveal", action="store_true",
                              help="print the subject's identifiers for the person doing the work (audited)")
    made["show"].add_argument("--by", metavar="NAME", help="who is looking (required with --reveal)")
    made["done"].add_argument("--items", type=int, required=True, metavar="N", help="how many items were erased")
    for name in ("done", "not-found"):
        made[name].add_argument("--evidence", required=True, metavar="TEXT",
                                help="what was done, one line, without the subject's identifiers")
        made[name].add_argument("--by", required=True, metavar="NAME", help="who did it")
