"""docs/runbook.md keeps up with the code: every event logged at warning or above (found by reading
the source of worker/ and connectors/) has a row saying what it means and what to do, at the level
the code logs it, and no row names an event the code no longer logs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.helpers import ROOT, python_files

RUNBOOK = ROOT / "docs" / "runbook.md"
LEVELS = {"warning": "warning", "warn": "warning", "error": "error", "exception": "error", "critical": "error"}
# `_log(f"system.{to}", to == S.FAILED, ...)` in worker/engine/state.py: warning when the flag holds, else info
FLAGGED_LOGGER = "_log"
EVENT = re.compile(r"[a-z_]+(\.[a-z_]+)+")  # how events are named; a call with such a first argument is a log


def loggers(tree: ast.Module) -> set[str]:
    """Names bound at module level to a structlog or logging logger (calls on other loggers, say
    self.log, are found by their event's name)."""
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and func.attr in ("get_logger", "getLogger"):
                found |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return found


def flagged_event(call: ast.Call) -> str | None:
    """The event `_log(f"PREFIX.{var}", var == ENUM.MEMBER, ...)` logs at warning: PREFIX.member."""
    if len(call.args) < 2:
        return None
    template, flag = call.args[0], call.args[1]
    if not (isinstance(template, ast.JoinedStr) and len(template.values) == 2
            and isinstance(template.values[0], ast.Constant) and isinstance(template.values[0].value, str)
            and isinstance(template.values[1], ast.FormattedValue)):
        return None
    if not (isinstance(flag, ast.Compare) and isinstance(flag.ops[0], ast.Eq)
            and isinstance(flag.comparators[0], ast.Attribute)):
        return None
    prefix: str = template.values[0].value
    return prefix + flag.comparators[0].attr.lower()


def logged_at_warning_or_above() -> tuple[dict[str, set[str]], list[str]]:
    """Events logged at warning or above, with their levels and where; and the calls whose event
    could not be read off the source (each one a reason to teach this scan, never to skip it)."""
    events: dict[str, set[str]] = {}
    unreadable = []
    for path in python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        names = loggers(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            func = node.func
            if isinstance(func, ast.Name) and func.id == FLAGGED_LOGGER:
                event, level = flagged_event(node), "warning"
            elif isinstance(func, ast.Attribute) and func.attr in LEVELS:
                first = node.args[0] if node.args else None
                event = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
                on_a_logger = isinstance(func.value, ast.Name) and func.value.id in names
                if not on_a_logger and (event is None or not EVENT.fullmatch(event)):
                    continue  # another object's method (a config reader's error()), not a log call
                level = LEVELS[func.attr]
            else:
                continue
            if event is None:
                unreadable.append(where)
            else:
                events.setdefault(event, set()).add(level)
    return events, unreadable


def runbook_rows() -> dict[str, str]:
    """The events table of the runbook: event -> level."""
    text = RUNBOOK.read_text(encoding="utf-8")
    section = text.split("## Events at warning and above", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| (warning|error) \|", section, flags=re.M)
    return dict(rows)


def test_the_scan_finds_the_events_it_must() -> None:
    """The scan reads every warning call, including the state machine's flagged ones."""
    events, unreadable = logged_at_warning_or_above()
    assert not unreadable, f"log calls whose event this scan cannot read: {unreadable}"
    assert {"system.failed", "request.failed", "system.crashed", "intake.dropped"} <= set(events)


def test_every_warning_the_code_logs_is_in_the_runbook() -> None:
    """Each event logged at warning or error has a row in the runbook, at that level."""
    events, _ = logged_at_warning_or_above()
    rows = runbook_rows()
    missing = sorted(set(events) - set(rows))
    assert not missing, f"add these to docs/runbook.md, with what they mean and what to do: {missing}"
    for event, levels in events.items():
        assert rows[event] == max(levels, key=["warning", "error"].index), event


def test_the_runbook_names_no_event_the_code_does_not_log() -> None:
    """No row describes an event that nothing logs any more (renamed or removed)."""
    events, _ = logged_at_warning_or_above()
    assert sorted(set(runbook_rows()) - set(events)) == []


def test_every_row_says_what_it_means_and_what_to_do() -> None:
    """Each row of the events table has four filled cells: event, level, meaning, action."""
    section = RUNBOOK.read_text(encoding="utf-8").split("## Events at warning and above", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) == len(runbook_rows())
    for row in rows:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        assert len(cells) == 4 and all(len(cell) > 2 for cell in cells), row


def test_the_runbook_links_resolve() -> None:
    """Every relative link in the runbook names a file that exists."""
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", RUNBOOK.read_text(encoding="utf-8")):
        assert (RUNBOOK.parent / target).resolve().exists(), target


def test_paths_named_in_the_runbook_exist() -> None:
    """Files the runbook points to in code spans (deploy/..., tests/...) exist."""
    text = RUNBOOK.read_text(encoding="utf-8")
    for path in set(re.findall(r"`((?:deploy|tests|docs)/[\w./-]+)`", text)):
        assert Path(ROOT / path).exists() or any(ROOT.glob(path)), path
