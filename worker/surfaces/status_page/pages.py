"""The status page's two pages: the requests (overdue first, with deadlines, and the open tasks of
manual systems) and one request (its systems with status, evidence and reason, its flagged models,
its certificate to download)."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from fastapi.responses import HTMLResponse

from worker.engine import deadlines
from worker.runtime import Runtime
from worker.store.models import RequestStatus, Scope
from worker.surfaces import report, views
from worker.surfaces.status_page import actions, preview, tasks
from worker.surfaces.status_page.html import (
    MET,
    days_left,
    flag_rows,
    html_page,
    model_rows,
    request_rows,
    status_badges,
    system_rows,
    table,
    when,
    with_code,
)

COMPLETED_SHOWN = 100




def listing_page(rt: Runtime, csrf: str | None = None, task_error: str | None = None,
                 status: int = 200) -> HTMLResponse:
    """Open requests (overdue first, then by deadline), open tasks (with forms that settle them given
    the session's `csrf` token: a session that may), the latest completed, and flagged models."""
    now = datetime.now(UTC)
    # soonest deadline first puts the overdue first: an open request is overdue once its deadline passed
    pending = views.listing(rt, statuses=deadlines.OPEN, by_deadline=True)
    done = views.listing(rt, RequestStatus.COMPLETED, limit=COMPLETED_SHOWN)
    counts = deadlines.stats(rt)  # counted in the store: the list stops at views.LIST_LIMIT
    opened, late = sum(counts["by_status"][s] for s in deadlines.OPEN), counts["overdue"]
    heads = ["Request", "Status", "Received", "Deadline"]
    tail = ["Subject ref", "Systems", "Flagged models"]
    body = [
        "<h1>Erasure requests</h1>",
        f'<p class="lede">{opened} open, <strong>{late} overdue</strong>; '
        f"{len(done)} completed shown. Dates are UTC.</p>",
        '<section aria-labelledby="open"><h2 id="open">Open requests</h2>',
        table("Overdue first, then by deadline", [*heads, "Time left", *tail], request_rows(pending, now, False))
        if pending else "<p>No open request.</p>", "</section>",
        tasks.section(rt, csrf, task_error),
        '<section aria-labelledby="done"><h2 id="done">Completed</h2>',
        table(f"Newest first, at most {COMPLETED_SHOWN}", [*heads, "Completed", *tail], request_rows(done, now, True))
        if done else "<p>No completed request yet.</p>", "</section>",
    ]
    models = views.models(rt, flagged_only=True)
    body += ['<section aria-labelledby="models"><h2 id="models">Flagged models</h2>',
             table("Model versions trained on a snapshot that held a subject's data",
                   ["Model", "Version", "Flags", "Requests"], model_rows(models))
             if models else "<p>No model version is flagged.</p>", "</section>"]
    return html_page("Requests", "".join(body), signed_in=True, status=status)


def request_page(rt: Runtime, request_id: str, csrf: str | None = None, notice: str | None = None,
                 error: str | None = None, status: int = 200) -> HTMLResponse:
    """One request as its certificate has it, with the certificate to download; its actions' forms given
    the session's `csrf` token (a session that may act); `notice`, what the last action did, or `error`,
    why it was not done."""
    cert = report.build(rt, request_id)
    now, rid = datetime.now(UTC), escape(request_id)
    is_open = cert["status"] in deadlines.OPEN
    deadline = when(cert["deadline"]) + (f" · {days_left(cert['deadline'], now)}" if is_open else "")
    if cert["extended"]:
        deadline += f" · extended by {escape(str(cert['extended']['months']))} month(s): " \
                    f"{escape(cert['extended']['reason'] or '')}"
    facts = [("Status", status_badges(cert)), ("Scope", f"<strong>{escape(cert['scope'])}</strong>: "
                                                        f"{escape(cert['scope_statement'])}"),
             ("Subject ref", f"<code>{escape(cert['subject_ref'])}</code>"),
             ("Received", when(cert["received_at"])), ("Deadline", deadline),
             ("Completed", when(cert["completed_at"]) + MET[cert["deadline_met"]])]
    facts += [("Error", escape(cert["error"]))] if cert["error"] else []
    body = [
        '<nav aria-label="Breadcrumb"><a href="/">All requests</a></nav>',
        f"<h1>Request <code>{rid}</code></h1>",
        f'<p class="note" role="status" id="result">{escape(notice)}</p>' if notice else "",
        f'<p class="error" role="alert" id="result">Not done: {escape(error)}</p>' if error else "",
        '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>",
        f'<p class="note">{with_code(report.kept_on_purpose_text(cert["skipped_systems"]))}</p>'
        if cert["scope"] == Scope.TRAINING else "",
        f'<p class="error">{with_code(report.nothing_found_text(cert["identifier_types"]))}</p>'
        if cert["nothing_found"] else "",
        f'<p class="downloads">Certificate of erasure: <a href="/requests/{rid}/certificate.md" download>'
        f'Markdown</a> · <a href="/requests/{rid}/certificate.json" download>JSON</a></p>',
        preview.button(request_id, cert["status"]),
        actions.section(cert, csrf),
        '<section aria-labelledby="systems"><h2 id="systems">Systems</h2>',
        table("Each system's outcome", ["System", "Kind", "Status", "Attempts", "Items erased", "Finished",
                                        "Reason or error"], system_rows(cert["systems"]), numeric=frozenset({3, 4})),
        '<h3 id="evidence">Evidence</h3>',
    ]
    for system in cert["systems"]:
        lines = "".join(f"<li>{with_code(line)}</li>" for line in report._system_lines(system))
        body.append(f'<h4>{escape(system["system"])} ({escape(system["kind"])})</h4><ul class="evidence">{lines}</ul>')
    body += ["</section>", '<section aria-labelledby="flags"><h2 id="flags">Flagged models</h2>',
             table("Model versions trained on a snapshot that held this subject's data",
                   ["Model", "Version", "Snapshots", "State", "Reason", "Flagged"], flag_rows(cert["flagged_models"]))
             if cert["flagged_models"] else "<p>No recorded model version was trained on this subject's data.</p>",
             "</section>", '<section aria-labelledby="audit"><h2 id="audit">Audit trail</h2>',
             f"<p>{cert['audit']['events']} events of this request; the trail's head is event "
             f"{cert['audit']['head_seq']}, <code>{escape(str(cert['audit']['head']))}</code>.</p></section>"]
    return html_page(f"Request {request_id}", "".join(body), signed_in=True, status=status)
