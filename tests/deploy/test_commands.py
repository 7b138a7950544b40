"""Every command the deploy files and the runbook run exists: each `erasure ...` is parsed by the
real command line (worker.surfaces.cli), each other program is one the image or its service has."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import DEPLOY, ROOT, compose_file, erasure_containers
from worker.surfaces.cli import build_parser

DOCS = (ROOT / "docs" / "runbook.md", DEPLOY / "README.md")
# programs the deploy files run besides erasure, and where they come from
OTHER_PROGRAMS = {
    "celery": "a dependency of erasure-worker, in the image's venv (its ping is run for real in test_processes)",
    "python": "the image's interpreter",
    "pg_isready": "the postgres image",
    "rabbitmq-diagnostics": "the rabbitmq image",
}
# what the runbook must tell on-call to run
RUNBOOK_MUST_RUN = {("list",), ("status",), ("stats",), ("retry",), ("replay",), ("keys", "rotate"), ("keys", "new")}


OPERATORS = set(";&|()<>")


def shell_words(text: str) -> list[list[str]]:
    """A shell text as its simple commands' words: split at line ends and | ; && ||, comments left
    out, `$(...)` taken as a command of its own, a leading `exec` or VAR=value dropped."""
    text = text.replace("\\\n", " ")
    inner = re.findall(r"\$\(([^()]*)\)", text)
    text = re.sub(r"\$\(([^()]*)\)", "SUBSTITUTED", text)
    commands: list[list[str]] = []
    for line in [*text.splitlines(), *inner]:
        lexer = shlex.shlex(line, posix=True, punctuation_chars="".join(sorted(OPERATORS)))
        lexer.whitespace_split = True
        current: list[str] = []
        for word in lexer:
            if set(word) <= OPERATORS:
                commands.append(current)
                current = []
            else:
                current.append(word)
        commands.append(current)
    return [words for words in map(_without_prefix, commands) if words]


def _without_prefix(words: list[str]) -> list[str]:
    while words and (words[0] == "exec" or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0])):
        words = words[1:]
    return words


def erasure_invocations(words: list[str]) -> list[list[str]]:
    """The `erasure` commands in one command's words: `erasure ...` itself, or after `--`
    (kubectl exec), or after a service or image name (docker compose exec api erasure ...);
    never `erasure` as an option's value (`rabbitmqctl -p erasure`)."""
    found = []
    for at, word in enumerate(words):
        before = words[at - 1] if at else None
        if word == "erasure" and (before is None or before == "--" or not before.startswith("-")):
            found.append(words[at + 1:])
    return found


def exec_words(command: list[str]) -> list[list[str]]:
    """An exec-form command as the commands it runs: `sh -c SCRIPT` is the script's."""
    if len(command) >= 3 and command[0] in ("sh", "/bin/sh", "bash") and command[1] == "-c":
        return shell_words(command[2])
    return [command]


def deploy_commands() -> list[tuple[str, list[str]]]:
    """Every command the deploy files run, with where: the Dockerfile's CMD, compose's commands and
    health checks, the Kubernetes containers' commands, args and exec probes."""
    found: list[tuple[str, list[str]]] = []
    for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith(("CMD ", "ENTRYPOINT ")):
            found.append(("Dockerfile " + line.split()[0], json.loads(line.split(" ", 1)[1])))
    for name, service in compose_file()["services"].items():
        if "command" in service:
            found += [(f"compose {name} command", words) for words in exec_words(list(service["command"]))]
        test = service.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD":
            found.append((f"compose {name} healthcheck", list(test[1:])))
        elif test and test[0] == "CMD-SHELL":
            found += [(f"compose {name} healthcheck", words) for words in shell_words(test[1].replace("$$", "$"))]
    for doc, container in erasure_containers():
        where = f"{doc} container {container['name']}"
        found += [(where, words) for words in exec_words([*container.get("command", []), *container.get("args", [])])]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = container.get(probe, {}).get("exec", {}).get("command")
            if command:
                found += [(f"{where} {probe}", words) for words in exec_words(list(command))]
    return found


def parse(argv: list[str]) -> argparse.Namespace:
    """The real parser's reading of `erasure ARGV`; AssertionError with its message if it refuses."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return build_parser().parse_args(argv)
    except SystemExit:
        raise AssertionError(f"erasure {' '.join(argv)}: {stderr.getvalue().strip()}") from None


def subcommand_path(args: argparse.Namespace) -> tuple[str, ...]:
    """The subcommands a parse went through: ("keys", "rotate"), ("status",)."""
    path = [args.command]
    for extra in ("keys_command", "lineage_command", "audit_command", "models_command"):
        if getattr(args, extra, None):
            path.append(getattr(args, extra))
    return tuple(path)


def choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@pytest.mark.parametrize("where, words", deploy_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_deploy_command_exists(where: str, words: list[str]) -> None:
    """Each command a deploy file runs is a real `erasure` command line or a known program."""
    program = words[0].rsplit("/", 1)[-1]
    if program == "erasure":
        parse(words[1:])
    else:
        assert program in OTHER_PROGRAMS, f"{where}: {' '.join(words)}"


def test_deploy_files_run_the_three_roles() -> None:
    """The deploy files start workers, beat and the API, each with options the CLI takes."""
    roles = {subcommand_path(parse(words[1:])) for _, words in deploy_commands() if words[0] == "erasure"}
    assert {("worker",), ("beat",), ("api",)} <= roles


def fenced_blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text."""
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def inline_code(text: str) -> list[str]:
    """The inline code spans of a Markdown text, outside fenced blocks."""
    outside = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", outside)


def doc_commands(path: Path, spans: bool = True) -> list[list[str]]:
    """Every `erasure` command in a document's code blocks (and, with spans, its inline code)."""
    text = path.read_text(encoding="utf-8")
    found = []
    for snippet in [*fenced_blocks(text), *(inline_code(text) if spans else [])]:
        for words in shell_words(snippet):
            found += erasure_invocations(words)
    return found


def names_subcommands(argv: list[str]) -> bool:
    """Whether the words are only a chain of real subcommands (a mention in prose: `erasure keys`)."""
    parser: argparse.ArgumentParser = build_parser()
    for word in argv:
        if word not in choices(parser):
            return False
        parser = choices(parser)[word]
    return True


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_in_the_docs_parses(path: Path) -> None:
    """Each `erasure ...` in the runbook's and deploy/README.md's code blocks is taken whole by the
    real parser; in prose, a command is taken whole too, or names a chain of real subcommands."""
    blocks = doc_commands(path, spans=False)
    assert blocks
    for argv in blocks:
        parse(argv)
    for argv in doc_commands(path):
        if not names_subcommands(argv):
            parse(argv)


def test_the_runbook_shows_the_on_call_commands() -> None:
    """The runbook shows, in full, how to list, inspect, count, retry, replay and rotate keys."""
    shown = set()
    for argv in doc_commands(ROOT / "docs" / "runbook.md"):
        with contextlib.suppress(AssertionError):
            shown.add(subcommand_path(parse(argv)))
    assert RUNBOOK_MUST_RUN <= shown, sorted(RUNBOOK_MUST_RUN - shown)
