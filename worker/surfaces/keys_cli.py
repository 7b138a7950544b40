"""`erasure keys`: a new random secret or key file, and sealing every stored identifier again under
the newest secret. Errors and exit codes are the `erasure` command's."""

from __future__ import annotations

import argparse
from typing import Any

from worker import config as settings
from worker import keys
from worker.queue.dispatch import celery_runtime
from worker.runtime import rotate_keys


def cmd_keys_new(args: argparse.Namespace) -> None:
    if args.file:
        print(keys.key_file_text([keys.new_secret()], keys.new_secret()), end="")
    else:
        print(keys.new_secret())


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    counts = rotate_keys(celery_runtime(settings.load(settings.config_path(args.config))))
    print(f"sealed again under the newest key: {counts['requests']} request(s), "
          f"{counts['suppressions']} suppression entr{'y' if counts['suppressions'] == 1 else 'ies'}; "
          "older keys can now be dropped")


def add_parser(sub: Any, common: argparse.ArgumentParser, parser_class: type[argparse.ArgumentParser]) -> None:
    """Add `keys` and its subcommands."""
    keys_parser = sub.add_parser("keys", help="the keys that seal identifiers")
    keys_sub = keys_parser.add_subparsers(dest="keys_command", required=True, parser_class=parser_class)
    new = keys_sub.add_parser("new", help="print a new random secret (for ERASURE_SECRET_KEY / ERASURE_SUBJECT_KEY)")
    new.add_argument("--file", action="store_true", help="print a whole key file instead (for ERASURE_KEY_FILE)")
    new.set_defaults(handler=cmd_keys_new)
    rotate = keys_sub.add_parser("rotate", parents=[common],
                                 help="seal every stored identifier again under the newest secret")
    rotate.set_defaults(handler=cmd_keys_rotate)
