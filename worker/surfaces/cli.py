"""The `erasure` command. Exit codes: 0 done, 2 bad input or usage (one line on stderr,
nothing recorded), 3 no such request, 1 anything else."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from worker import config as settings
from worker import logs
from worker.engine import audit, deadlines, exemptions, fanout, flags, intake, suppression
from worker.errors import ConfigError, ErasureError, InputError, NoSuchRequest, RefusedError
from worker.queue import (
    celery_app,
    dispatch,
    tasks,  # noqa: F401 - registers the tasks
)
from worker.queue.dispatch import celery_runtime
from worker.store.models import FlagState, Scope
from worker.surfaces import (
    check_cli,
    demo,
    discover_cli,
    explain_cli,
    keys_cli,
    locate_cli,
    report,
    tasks_cli,
    training_cli,
    views,
)
from worker.surfaces.render import show_status, table

Handler = Callable[[argparse.Namespace], int | None]


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"erasure: {message} (see {self.prog} --help)\n")


def _runtime(args: argparse.Namespace):  # type: ignore[no-untyped-def]

    return celery_runtime(settings.load(settings.config_path(args.config)))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def cmd_submit(args: argparse.Namespace) -> None:
    if args.dry_run:
        return locate_cli.cmd_dry_run(args)
    rt = _runtime(args)
    done = intake.submit(rt, intake.parse_subject_args(args.subject), args.requested_by, args.idempotency_key,
                         args.scope)
    if args.json:
        _print_json(done.to_json())
    else:
        print(f"{done.request_id}  {done.status}{'  (already submitted)' if done.duplicate else ''}")


def cmd_status(args: argparse.Namespace) -> None:
    status = views.status(_runtime(args), args.request_id)
    _print_json(status) if args.json else print(show_status(status))


def cmd_list(args: argparse.Namespace) -> None:
    found = views.listing(_runtime(args), args.status, args.overdue, scope=args.scope)
    if args.json:
        _print_json(found)
        return
    print(table(["REQUEST", "STATUS", "SCOPE", "RECEIVED", "DEADLINE", "SYSTEMS"],
                [[r["request_id"], r["status"], r["scope"], r["received_at"], r["deadline"],
                  " ".join(f"{s['system']}={s['status']}" for s in r["systems"])] for r in found]))


def cmd_retry(args: argparse.Namespace) -> None:
    systems = fanout.retry(_runtime(args), args.request_id)
    print(f"{args.request_id}  retrying {', '.join(systems) or 'resolution'}")


def cmd_extend(args: argparse.Namespace) -> None:
    request = deadlines.extend(_runtime(args), args.request_id, args.months, args.reason)
    print(f"{request.id}  deadline {views.timestamp(request.deadline)}"
          f" (was {views.timestamp(request.original_deadline)}), extended by {request.extended_months} month(s)")


def cmd_stats(args: argparse.Namespace) -> None:
    counts = deadlines.stats(_runtime(args), args.due_within)
    if args.json:
        _print_json(counts)
        return
    print(f"overdue   {counts['overdue']}\ndue soon  {counts['due_soon']}  (within {counts['due_within_days']} days)\n")
    print(table(["STATUS", "REQUESTS"], list(counts["by_status"].items())))


def cmd_models(args: argparse.Namespace) -> None:
    found = views.models(_runtime(args), args.flagged)
    if args.json:
        _print_json(found)
        return
    print(table(["MODEL", "VERSION", "REQUEST", "STATE", "SNAPSHOTS", "CHANGED", "REASON"],
                [[m["model"], m["version"], f.get("request_id"), f.get("state"),
                  " ".join(f.get("snapshots", ())) or None, f.get("changed_at"), f.get("reason")]
                 for m in found for f in m["flags"] or [{}]]))


FLAG_COMMANDS = {"ack": "acknowledged", "retrained": "retrained", "waive": "waived"}


def cmd_models_change(args: argparse.Namespace) -> None:
    to = FlagState(FLAG_COMMANDS[args.models_command])
    for request_id, previous in flags.change(_runtime(args), args.model, args.version, to, args.reason, args.request):
        print(f"{args.model} {args.version}  {request_id}  {previous} -> {to}")


def cmd_worker(args: argparse.Namespace) -> None:
    names = [q.strip() for q in args.queues.split(",")] if args.queues is not None else list(celery_app.QUEUES)
    if "" in names:
        raise InputError(f"--queues: an empty queue name in {args.queues!r} (names are comma-separated)")
    unknown = set(names) - set(celery_app.QUEUES)
    if unknown:
        raise InputError(f"--queues: unknown queue(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(celery_app.QUEUES)})")
    queues = ",".join(names)
    if args.check:
        check_cli.gate(args.config)  # every system reachable, read-only, before anything starts
    rt = dispatch.install(_runtime(args))
    rt.check()  # migrate, find the keys, and fail fast before the worker starts

    # Threads, not prefork: connectors wait on I/O (pyarrow releases the GIL), and one
    # process per worker stops cleanly on a SIGTERM sent to its whole process group.
    beat = args.beat if args.beat is not None else rt.config.broker_url.startswith("sqla+")
    celery_app.app.worker_main([
        *_quiet(args), "worker", f"--concurrency={args.concurrency}", f"--queues={queues}", "--loglevel=INFO",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        "--pool=threads", f"--hostname=erasure-{os.getpid()}@%h", *(["--beat"] if beat else []),
    ])


def cmd_beat(args: argparse.Namespace) -> None:
    dispatch.install(_runtime(args)).check()  # migrate, find the keys, and fail fast

    celery_app.app.start([*_quiet(args), "beat", "--loglevel=INFO"])


def _quiet(args: argparse.Namespace) -> list[str]:
    """Celery's option that leaves out its banner (text, not a log line), unless --banner."""
    return [] if args.banner else ["--quiet"]


def cmd_api(args: argparse.Namespace) -> int | None:
    rt = _runtime(args)
    if not rt.config.api.tokens:
        raise ConfigError(f"{rt.config.path}: api tokens: none configured, so every call would be refused "
                          '(add [api.tokens] "<sha256 hex of a token>" = ["submit", "read"])')
    try:
        import uvicorn

        from worker.surfaces import api  # fastapi: the optional [api] extra
    except ImportError as exc:
        print(f"erasure: the API needs its extra: pip install 'erasure-worker[api]' ({exc.name} is missing)",
              file=sys.stderr)
        return 2
    logs.configure(level="INFO")
    rt.check()  # migrate, find the keys, and fail fast before serving
    uvicorn.run(api.create_app(rt), host=args.host, port=args.port, log_config=None)
    return None


def cmd_report(args: argparse.Namespace) -> None:
    certificate = report.build(_runtime(args), args.request_id)
    _print_json(certificate) if args.format == "json" else print(report.markdown(certificate), end="")


def cmd_audit_verify(args: argparse.Namespace) -> None:
    if args.head is not None and not audit.HASH.fullmatch(args.head):
        raise InputError("--head: a SHA-256 as 64 lowercase hex digits, as a certificate quotes it")
    verdict = audit.verify(_runtime(args).transaction, args.head)
    if verdict.broken is not None:
        before = f"events 1 to {verdict.events} check out" if verdict.events else "no event before it checks out"
        raise audit.ChainBroken(f"audit chain broken at event {verdict.broken}: {verdict.problem} ({before})")
    if args.head is not None and not verdict.found:
        raise audit.ChainBroken(f"head {args.head} is not in the chain of {verdict.events} events: "
                                "the events up to it were rewritten or removed")
    print(f"audit trail intact: {verdict.events} events checked, head {verdict.head.seq} {verdict.head.hash}")


def cmd_exempt(args: argparse.Namespace) -> None:
    status = exemptions.exempt(_runtime(args), args.request_id, args.system, args.reason)
    print(f"{args.request_id}  {args.system} exempt, request {status}")


def cmd_replay(args: argparse.Namespace) -> None:
    since = None
    if args.since is not None:
        try:
            since = datetime.strptime(args.since, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise InputError(f"--since: {args.since!r} is not a date as YYYY-MM-DD (the restored backup's)") from None
    done = suppression.replay(_runtime(args), args.system, since)
    if args.json:
        _print_json(done.to_json())
    else:
        print(f"replayed {done.requests} completed request(s) on {done.system}"
              f"{f' since {done.since}' if done.since else ''}: {done.items_erased} item(s) erased again"
              f"{f', {done.still_present} still present' if done.still_present else ''}")


def cmd_demo(args: argparse.Namespace) -> int:
    return demo.run()


COMMANDS: list[tuple[str, Handler, str]] = [
    ("submit", cmd_submit, "validate, record and enqueue an erasure request"),
    ("worker", cmd_worker, "run the worker until SIGTERM/SIGINT"),
    ("status", cmd_status, "show one request"),
    ("list", cmd_list, "list requests, newest first"),
    ("retry", cmd_retry, "re-run the failed systems of a failed request"),
    ("extend", cmd_extend, "extend a request's deadline once, by one or two months (Art. 12(3))"),
    ("stats", cmd_stats, "counts for dashboards: overdue, due soon, requests by status"),
    ("beat", cmd_beat, "run the periodic reconciler alone (production; the embedded worker runs its own)"),
    ("models", cmd_models, "model versions and their flags"),
    ("report", cmd_report, "the certificate of erasure of one request"),
    ("exempt", cmd_exempt, "exempt one system of one request, for good, with the reason (Art. 17(3))"),
    ("replay", cmd_replay, "re-apply completed erasures to a system restored from an older backup"),
    ("demo", cmd_demo, "a self-contained run on embedded parts, no servers needed"),
    ("api", cmd_api, "serve the HTTP API (needs at least one token in [api.tokens])"),
]


def build_parser() -> Parser:
    """The whole command line."""
    common = Parser(add_help=False)
    common.add_argument("--config", help="config file (default: $ERASURE_CONFIG, else ./erasure.toml)")
    parser = Parser(prog="erasure", description="Right-to-erasure orchestration worker.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    made = {name: sub.add_parser(name, parents=[common], help=text, description=text)
            for name, _, text in COMMANDS}
    for name, handler, _ in COMMANDS:
        made[name].set_defaults(handler=handler)

    made["submit"].add_argument("--subject", action="append", required=True, metavar="TYPE=VALUE")
    made["submit"].add_argument("--requested-by", metavar="TEXT")
    made["submit"].add_argument("--idempotency-key", metavar="KEY")
    made["submit"].add_argument("--scope", choices=[s.value for s in Scope], default=None,
                                help="training: an objection to training use (Art. 21), which erases only the "
                                     "systems marked training and skips the others (default: all)")
    made["submit"].add_argument("--dry-run", action="store_true",
                                help="record and erase nothing: print what the erasure would take (as `locate`)")
    made["worker"].add_argument("--concurrency", type=int, default=2, metavar="N")
    made["worker"].add_argument("--queues", metavar="Q,...", help="default: every erasure queue")
    made["worker"].add_argument("--beat", action=argparse.BooleanOptionalAction, default=None,
                                help="also run the reconciler (default: only on the embedded broker)")
    made["worker"].add_argument("--check", action="store_true",
                                help="run `erasure check` first and refuse to start if a system fails it")
    for name in ("worker", "beat"):
        made[name].add_argument("--banner", action="store_true",
                                help="print Celery's banner at start (plain text, not a log line)")
    made["status"].add_argument("request_id")
    made["list"].add_argument("--status", metavar="S")
    made["list"].add_argument("--overdue", action="store_true")
    made["list"].add_argument("--scope", choices=[s.value for s in Scope], default=None,
                              help="only requests of this scope")
    made["retry"].add_argument("request_id")
    made["extend"].add_argument("request_id")
    made["extend"].add_argument("--months", type=int, choices=(1, 2), required=True,
                                help="Art. 12(3) allows one extension of up to two months")
    made["extend"].add_argument("--reason", required=True, metavar="TEXT",
                                help="why, as told to the data subject (kept with the request)")
    made["stats"].add_argument("--due-within", type=int, metavar="DAYS", help="what counts as due soon (default: 7)")
    made["models"].add_argument("--flagged", action="store_true")
    made["report"].add_argument("request_id")
    made["report"].add_argument("--format", choices=("json", "md"), default="json",
                                help="json (the contract's fields) or md, a certificate for people (default: json)")
    made["exempt"].add_argument("request_id")
    made["exempt"].add_argument("--system", required=True, metavar="S")
    made["exempt"].add_argument("--reason", required=True, metavar="TEXT",
                                help="the legal ground, kept with the system and in the audit trail")
    made["replay"].add_argument("--system", required=True, metavar="S")
    made["replay"].add_argument("--since", metavar="YYYY-MM-DD",
                                help="only requests completed since then: the restored backup's date (default: all)")
    made["api"].add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    made["api"].add_argument("--port", type=int, default=8080, help="default: 8080")
    # optional, so `erasure models [--flagged] [--json]` stays as the contract has it; --config here
    # defaults to nothing so that `models --config X ack ...` keeps the X given before the subcommand
    quiet_config = Parser(add_help=False)
    quiet_config.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    models_sub = made["models"].add_subparsers(dest="models_command", parser_class=Parser,
                                               metavar="{ack,retrained,waive}")
    for name, text in (("ack", "acknowledge a model version's open flags"),
                       ("retrained", "record that a model version's acknowledged flags were retrained away"),
                       ("waive", "waive a model version's open or acknowledged flags")):
        change = models_sub.add_parser(name, parents=[quiet_config], help=text, description=text)
        change.add_argument("model")
        change.add_argument("version")
        change.add_argument("--reason", required=True, metavar="TEXT", help="why, kept with the flag's history")
        change.add_argument("--request", metavar="ID", help="only this request's flag")
        change.set_defaults(handler=cmd_models_change)
    for name in ("submit", "status", "list", "models", "stats", "replay"):
        made[name].add_argument("--json", action="store_true", help="print the contract's JSON")

    tasks_cli.add_parser(sub, common, Parser)
    discover_cli.add_parser(sub, common)
    check_cli.add_parser(sub, common, Parser)
    locate_cli.add_parser(sub, common)
    explain_cli.add_parser(sub, common)
    training_cli.add_parser(sub, common, Parser)
    keys_cli.add_parser(sub, common, Parser)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, parser_class=Parser)
    verify = audit_sub.add_parser("verify", parents=[common], help="check the audit trail's hash chain")
    verify.add_argument("--head", metavar="SHA256", help="also check that this head (from a certificate) is in it")
    verify.set_defaults(handler=cmd_audit_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logs.configure(level="INFO" if args.command in ("worker", "beat") else "WARNING")
    try:
        return args.handler(args) or 0
    except (InputError, ConfigError, RefusedError) as exc:
        print(f"erasure: {exc}", file=sys.stderr)
        return 2
    except NoSuchRequest as exc:
        print(f"erasure: {exc}", file=sys.stderr)
        return 3
    except ErasureError as exc:
        print(f"erasure: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
