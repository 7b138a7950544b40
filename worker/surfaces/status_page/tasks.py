"""The status page's open tasks of manual systems (systems a person erases): listed for every
session, soonest deadline first, each with a form that settles it (done, with items and evidence, or
not found) for a session whose token has the `operate` scope. Each form carries the session's CSRF
token in a hidden field; routes.py refuses a POST without it or with a wrong one (403, nothing changed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from worker.engine import audit, manual_tasks
from worker.engine.flags import REASON_LIMIT
from worker.runtime import Runtime
from worker.surfaces.status_page.html import days_left, request_link, table, when


def section(rt: Runtime, csrf: str | None, error: str | None = None) -> str:
    """The open tasks; with `csrf` (a session that may settle them) a form on each; with `error`, why
    the last form was not recorded."""
    found = manual_tasks.open_tasks(rt)
    alert = f'<p class="error" role="alert" id="task-error">{escape(error)}</p>' if error else ""
    how = ("Settle one once the work is done: the items erased and what was done, never the subject's identifiers."
           if csrf else "A token with the <code>operate</code> scope settles them here; or "
           "<code>erasure tasks done|not-found</code>.")
    heads = ["Request", "System", "Deadline", "Look up by", "Instructions", *(["Settle"] if csrf else [])]
    listed = table("Manual systems waiting for a person, soonest deadline first", heads,
                   _rows(found, csrf)) if found else "<p>No open task.</p>"
    return (f'<section aria-labelledby="tasks"><h2 id="tasks">Open tasks</h2>{alert}'
            f'<p class="lede">{how} The subject\'s identifiers: <code>erasure tasks show REQUEST_ID --system S '
            f"--reveal --by NAME</code> (audited).</p>{listed}</section>")


def _rows(found: Sequence[manual_tasks.OpenTask], csrf: str | None) -> list[tuple[str, list[str]]]:
    """One row per task, late ones marked."""
    now, rows = datetime.now(UTC), []
    for n, task in enumerate(found):
        deadline = audit.stamp(task.deadline) or ""
        cells = [request_link(task.request_id), escape(task.system),
                 f"{when(deadline, day_only=True)} · {days_left(deadline, now)}",
                 escape(", ".join(task.identifier_types)),
                 f'<div class="instructions">{escape(task.instructions)}</div>']
        if csrf:
            cells.append(_form(task, csrf, n))
        rows.append(("late" if task.deadline < now else "", cells))
    return rows


def _form(task: manual_tasks.OpenTask, csrf: str, n: int) -> str:
    """The form that settles one task: done (items erased) or not found, with evidence and who."""
    action = f"/requests/{escape(task.request_id)}/tasks/{escape(task.system)}"
    return (
        f'<form class="task" method="post" action="{action}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        f'<label for="items-{n}">Items erased</label>'
        f'<input id="items-{n}" name="items" type="number" min="1" step="1" inputmode="numeric">'
        f'<label for="evidence-{n}">Evidence: what was done</label>'
        f'<input id="evidence-{n}" name="evidence" maxlength="{REASON_LIMIT}" required>'
        f'<label for="by-{n}">By</label>'
        f'<input id="by-{n}" name="by" maxlength="{manual_tasks.BY_LIMIT}" required autocomplete="name">'
        '<span class="buttons"><button type="submit" name="outcome" value="done">Done</button> '
        '<button type="submit" name="outcome" value="not_found">Not found</button></span></form>'
    )
