"""`erasure lineage` and `erasure guard`: which snapshots each model version was trained on (added by
hand or imported from MLflow, screened by the guard list), and the guard list itself: exported for
training jobs, and a training gate over one snapshot. Errors and exit codes are the `erasure` command's."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from worker import config as settings
from worker.engine import guard_list, lineage
from worker.integrations import mlflow_lineage
from worker.queue.dispatch import celery_runtime
from worker.runtime import Runtime
from worker.surfaces.render import table


def _runtime(args: argparse.Namespace) -> Runtime:
    return celery_runtime(settings.load(settings.config_path(args.config)))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def cmd_lineage_add(args: argparse.Namespace) -> None:
    trained_at = None if args.trained_at is None else lineage.parse_time(args.trained_at)
    rt = _runtime(args)
    added = lineage.add(rt, args.model, args.version, args.snapshot, trained_at, screen=_guard_screen(rt),
                        require_clean=args.require_clean)
    print(f"{args.model} {args.version}: {added.new} snapshot(s) recorded")
    for snapshot, rows in added.guarded.items():
        print(f"flagged: {snapshot} holds {rows} row(s) of guarded subjects (trained after the subject's request); "
              f"`erasure guard check {snapshot} --fix` removes them")
    for snapshot in added.unchecked:
        print(f"not checked by the guard: {snapshot} (a Delta table, or no files there)")


def cmd_lineage_import_mlflow(args: argparse.Namespace) -> int | None:
    rt = _runtime(args)
    try:
        done = mlflow_lineage.import_runs(rt, args.tracking_uri or rt.config.mlflow_tracking_uri,
                                          screen=_guard_screen(rt), require_clean=args.require_clean)
    except mlflow_lineage.MissingExtra as exc:
        print(exc, file=sys.stderr)
        return 2
    _print_json(done.to_json()) if args.json else print(done.show())
    return 1 if done.refused else None


def _guard_screen(rt: Runtime) -> lineage.Screen | None:
    """The guard's check of the snapshots a lineage names, when the config has a snapshot system."""
    if not any(s.kind == "snapshot" for s in rt.config.systems):
        return None
    from worker.engine import guard_check  # pyarrow and the snapshot kind: loaded for the commands that read them

    return guard_check.screen(rt)


def cmd_guard_export(args: argparse.Namespace) -> None:
    done = guard_list.export(_runtime(args), args.out)
    print(done.show())


def cmd_guard_check(args: argparse.Namespace) -> int:
    from worker.engine import guard_check  # pyarrow and the snapshot kind: loaded for this command only

    checked = guard_check.check(_runtime(args), args.snapshot, fix=args.fix)
    if args.json:
        _print_json(checked.to_json())
        return 0 if checked.clean else 1
    found = checked.to_json()
    if not found["rows"]:
        print(f"{checked.snapshot}: clean, {found['files_checked']} file(s) checked")
        return 0
    print(f"{checked.snapshot}: {found['rows']} row(s) of guarded subjects in {len(found['files'])} "
          f"of {found['files_checked']} file(s)\n")
    print(table(["TYPE", "ROWS", "VALUES"], [[t, c["rows"], c["values"]] for t, c in found["types"].items()]) + "\n")
    print(table(["FILE", "ROWS", "TYPES"], [[f["file"], f["rows"], " ".join(f"{t}={n}" for t, n in f["types"].items())]
                                           for f in found["files"]]))
    if checked.fixed is not None:
        fixed = checked.fixed
        models = ", ".join(f"{m['model']} {m['version']}" for m in fixed["models_flagged"]) or "none"
        print(f"\nfixed: {fixed['rows_removed']} row(s) removed, {len(fixed['files_rewritten'])} file(s) rewritten, "
              f"{fixed['rows_left']} left; model versions flagged: {models}")
    print(f"\n{checked.snapshot}: {'clean now' if checked.clean else 'not clean'}")
    return 0 if checked.clean else 1


def add_parser(sub: Any, common: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add `lineage` and `guard` and their subcommands."""
    lineage = sub.add_parser("lineage", help="training lineage of model versions")
    lineage_sub = lineage.add_subparsers(dest="lineage_command", required=True, parser_class=parser_class)
    add = lineage_sub.add_parser("add", parents=[common], help="record a model version's training snapshots")
    add.add_argument("--model", required=True)
    add.add_argument("--version", required=True)
    add.add_argument("--snapshot", action="append", required=True, metavar="SYSTEM:SNAPSHOT")
    add.add_argument("--trained-at", metavar="ISO8601", help="when training started, with a timezone (default: now)")
    add.add_argument("--require-clean", action="store_true",
                     help="refuse (exit 1, nothing recorded) if a snapshot holds guarded subjects")
    add.set_defaults(handler=cmd_lineage_add)
    mlflow = lineage_sub.add_parser("import-mlflow", parents=[common],
                                    help="record lineage from MLflow's registered model versions and their runs")
    mlflow.add_argument("--tracking-uri", metavar="URI", help="default: the config's [mlflow] tracking_uri")
    mlflow.add_argument("--json", action="store_true", help="print the summary as JSON")
    mlflow.add_argument("--require-clean", action="store_true",
                        help="record no version trained on a snapshot holding guarded subjects (exit 1)")
    mlflow.set_defaults(handler=cmd_lineage_import_mlflow)

    guard = sub.add_parser("guard", help="the guard list: erased and objecting subjects, kept out of training")
    guard_sub = guard.add_subparsers(dest="guard_command", required=True, parser_class=parser_class)
    export = guard_sub.add_parser("export", parents=[common],
                                  help="write the guard list for training jobs (keyed hashes)")
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write (mode 0600)")
    export.set_defaults(handler=cmd_guard_export)
    gate = guard_sub.add_parser("check", parents=[common],
                                help="a training gate: does a snapshot hold guarded subjects? (exit 0 clean, 1 not)")
    gate.add_argument("snapshot", metavar="SYSTEM:SNAPSHOT")
    gate.add_argument("--fix", action="store_true",
                      help="erase the rows found, flag the models trained on the snapshot, record it")
    gate.add_argument("--json", action="store_true", help="print the findings as JSON")
    gate.set_defaults(handler=cmd_guard_check)
