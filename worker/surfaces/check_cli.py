"""`erasure check [--json] [--timeout S]`: the config against the live systems, read-only (engine/check.py),
one line per system and resolver, `ok` or what fails, its notes beneath; exit 0 when all pass, 1 when
one fails. `erasure worker --check` runs it first (`gate`) and does not start on a failure. Errors and
exit codes otherwise are the `erasure` command's (cli.main): a bad config is 2."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker import config as settings
from worker.engine import check
from worker.engine.check import Report, Result
from worker.errors import InputError


def cmd_check(args: argparse.Namespace) -> int:
    """Check, print, and say by the exit code whether everything passed."""
    if not args.timeout > 0:
        raise InputError("--timeout: a number of seconds above 0")
    report = check.run(settings.load(settings.config_path(args.config)), args.timeout)
    print(json.dumps(report.to_json(), indent=2, ensure_ascii=False) if args.json else show(report))
    return 0 if report.ok else 1


def show(report: Report) -> str:
    """The report for people: one line per system and resolver, notes indented beneath, a verdict last."""
    results = [*report.systems, *report.resolvers]
    names = [_name(r) for r in results]
    width, kinds = max(map(len, names), default=0), max((len(r.kind) for r in results), default=0)
    lines = []
    for name, result in zip(names, results, strict=True):
        problems = result.found.problems
        lines.append(f"{name:<{width}}  {result.kind:<{kinds}}  " + (f"FAILED: {problems[0]}" if problems else "ok"))
        lines += [f"    FAILED: {problem}" for problem in problems[1:]]
        lines += [f"    note: {note}" for note in result.found.notes]
    failed = len(report.failed)
    lines.append(f"\n{'all pass' if not failed else f'{failed} of {len(results)} FAILED'}: "
                 f"{len(report.systems)} system(s), {len(report.resolvers)} resolver(s)")
    return "\n".join(lines)


def _name(result: Result) -> str:
    return f"{result.label} on {result.name}" if result.kind == "resolver" else result.name


def gate(config_option: str | None) -> None:
    """For `erasure worker --check`: check the config; on a failure, one line per problem on stderr and
    CheckFailed (exit 1), so the worker does not start."""
    report = check.run(settings.load(settings.config_path(config_option)))
    for result in report.failed:
        for problem in result.found.problems:
            print(f"erasure: check: {_name(result)}: {problem}", file=sys.stderr)
    if not report.ok:
        raise check.CheckFailed(f"{len(report.failed)} system(s) or resolver(s) failed the check: the worker does "
                                "not start (`erasure check` shows every finding)")


def add_parser(sub: Any, common: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    """`erasure check [--json] [--timeout S]` on the command line's parser."""
    text = "check the config against the live systems, read-only: exit 0 if all pass, 1 if one fails"
    parser = sub.add_parser("check", parents=[common], help=text, description=text)
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.add_argument("--timeout", type=float, default=check.TIMEOUT, metavar="S",
                        help=f"seconds each system may take (default: {check.TIMEOUT:g})")
    parser.set_defaults(handler=cmd_check)
