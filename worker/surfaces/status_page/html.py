"""The status page's HTML: server-rendered, no script, every value escaped; its style under a
Content-Security-Policy hash, and the pieces each page is made of."""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from fastapi.responses import HTMLResponse

from worker.surfaces.status_page.sessions import safe_next

MODEL_REQUESTS_SHOWN = 5

MET = {True: " · within the deadline", False: " · <strong>after the deadline</strong>", None: ""}


TONES = {  # a status's badge colour; the word is always written too
    "completed": "ok", "erased": "ok", "retrained": "ok", "failed": "bad", "open": "bad", "overdue": "bad",
    "exempt": "warn", "acknowledged": "warn", "nothing_found": "warn", "in_progress": "info", "running": "info",
    "pending": "info", "skipped": "quiet", "training": "info",
}


CSS = """
:root{--ink:#1a1a1a;--muted:#4a4a4a;--line:#c8ccd2;--band:#f3f4f6;--link:#1d4ed8}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:#fff}
a{color:var(--link)} a:focus,button:focus,input:focus{outline:3px solid #f59e0b;outline-offset:2px}
.skip{position:absolute;left:-999px} .skip:focus{left:1rem;top:.5rem;background:#fff;padding:.25rem .5rem}
header{background:#0f2942;color:#fff;padding:.6rem 1.5rem;display:flex;gap:1.5rem;align-items:center}
header .name{font-weight:700;font-size:1.1rem} header a{color:#fff}
header nav{flex:1;display:flex;gap:1.25rem;align-items:center}
header form{margin:0 0 0 auto}
button{font:inherit;padding:.35rem .9rem;border:1px solid #0f2942;border-radius:4px;background:#fff;color:#0f2942;
cursor:pointer}
header button{border-color:#fff}
main{max-width:84rem;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.75rem 0 .25rem} h2{font-size:1.25rem;margin:2rem 0 .5rem}
h3{font-size:1.05rem;margin:1.25rem 0 .25rem}
.lede{color:var(--muted);margin:.25rem 0 1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1rem;font-size:.95rem}
caption{text-align:left;color:var(--muted);padding:.25rem 0;caption-side:top}
th,td{text-align:left;vertical-align:top;padding:.4rem .6rem;border-bottom:1px solid var(--line)}
thead th{background:var(--band);border-bottom:2px solid #9aa1ab;white-space:nowrap}
tbody th{font-weight:600}
tr.late{background:#fff5f5}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
td code,th code,time{white-space:nowrap}
code{font:.9em ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;overflow-wrap:anywhere}
.badge{display:inline-block;padding:0 .45rem;border-radius:999px;font-size:.85rem;font-weight:600;white-space:nowrap;
background:#e5e7eb;color:#1f2937}
.ok{background:#dcfce7;color:#14532d} .bad{background:#fde2e2;color:#7f1d1d} .warn{background:#fef3c7;color:#713f12}
.info{background:#dbeafe;color:#1e3a8a} .quiet{background:#fff;color:#374151;border:1px dashed #6b7280}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1.5rem;margin:1rem 0}
dl.facts dt{font-weight:600} dl.facts dd{margin:0}
ul.evidence{margin:.25rem 0 1rem;padding-left:1.25rem} ul.evidence li{margin:.1rem 0}
.downloads{background:var(--band);border:1px solid var(--line);border-radius:6px;padding:.75rem 1rem}
.error{color:#7f1d1d;font-weight:600}
.note{background:#eff6ff;border:1px solid #bfdbfe;border-radius:6px;padding:.75rem 1rem;font-weight:600}
form.sign-in{max-width:28rem;border:1px solid var(--line);border-radius:6px;padding:1rem 1.25rem;margin:1.5rem 0}
form.sign-in label{display:block;font-weight:600;margin-bottom:.25rem}
form.sign-in input{width:100%;font:inherit;padding:.4rem;border:1px solid #6b7280;border-radius:4px}
form.sign-in p{margin:.5rem 0}
.hint{color:var(--muted);font-size:.9rem}
.instructions{white-space:pre-line;max-width:36rem}
form.task{display:grid;grid-template-columns:max-content minmax(12rem,1fr);gap:.25rem .5rem;margin:0}
form.task input{font:inherit;padding:.2rem .35rem;border:1px solid #6b7280;border-radius:4px}
form.task .buttons{grid-column:1 / -1}
form.task select{font:inherit;padding:.2rem .35rem;border:1px solid #6b7280;border-radius:4px;background:#fff}
form.act{max-width:40rem;margin:.5rem 0 1.25rem;padding:.75rem 1rem;border:1px solid var(--line);border-radius:6px}
"""


STYLE_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()


HEADERS = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def html_page(title: str, body: str, signed_in: bool, status: int = 200) -> HTMLResponse:
    """A whole page: landmarks, a skip link, the header with sign-out once signed in."""
    nav = ('<nav aria-label="Site"><a href="/">Requests</a>'
           '<form method="post" action="/sign-out"><button type="submit">Sign out</button></form></nav>'
           if signed_in else "")
    text = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)} · erasure-worker</title><style>{CSS}</style></head><body>"
            f'<a class="skip" href="#main">Skip to content</a>'
            f'<header><span class="name">erasure-worker · DPO status</span>{nav}</header>'
            f'<main id="main">{body}</main></body></html>')
    return HTMLResponse(text, status, HEADERS)


def badge(status: str, label: str | None = None) -> str:
    """A status as a coloured label that also reads as words (the status, or `label`)."""
    words = status.replace("_", " ") if label is None else label
    return f'<span class="badge {TONES.get(status, "")}">{escape(words)}</span>'


def when(stamp: str | None, day_only: bool = False) -> str:
    """A contract timestamp as a readable UTC time (or day, in lists), or a dash."""
    if not stamp:
        return "–"
    shown = stamp[:10] if day_only else f'{stamp[:16].replace("T", " ")} UTC'
    return f'<time datetime="{escape(stamp)}">{escape(shown)}</time>'


def parse(stamp: str) -> datetime:
    """A contract timestamp (ISO 8601 with Z) as an aware datetime."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def days_left(deadline: str, now: datetime) -> str:
    """How long until the deadline, or how far past it, in whole days."""
    delta = parse(deadline) - now
    if delta.total_seconds() >= 0:
        return "due within a day" if delta.days == 0 else f"{delta.days} day{'s' * (delta.days != 1)} left"
    late = (-delta).days
    text = "overdue by less than a day" if late == 0 else f"{late} day{'s' * (late != 1)} overdue"
    return f'<strong class="badge bad">{text}</strong>'


def table(caption: str, headers: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]],
          numeric: frozenset[int] = frozenset()) -> str:
    """A table of (row class, cells); the first cell heads its row, columns in `numeric` align right.
    Cells are HTML already: every value in them was escaped where it was made."""
    def num(i: int) -> str:
        return ' class="num"' if i in numeric else ""

    head = "".join(f'<th scope="col"{num(i)}>{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        f'<tr class="{row_class}"><th scope="row">{cells[0]}</th>'
        + "".join(f"<td{num(i)}>{c}</td>" for i, c in enumerate(cells[1:], 1)) + "</tr>"
        for row_class, cells in rows
    )
    return f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def counted(statuses: Iterable[str]) -> str:
    """Statuses as counts, e.g. '2 erased, 1 exempt'."""
    return ", ".join(f"{n} {escape(s.replace('_', ' '))}" for s, n in sorted(Counter(statuses).items())) or "–"


def with_code(line: str) -> str:
    """A line of the certificate's Markdown as HTML: escaped, its `code` spans as <code>."""
    return re.sub(r"``\s(.+?)\s``|`([^`]*)`", lambda m: f"<code>{m.group(1) or m.group(2)}</code>", escape(line))


def status_badges(shown: Mapping[str, Any]) -> str:
    """A request's status badge; beside a completed one that found nothing a marker that says so, and
    beside an objection to training use a marker that says that."""
    found = " " + badge("nothing_found", "nothing found: check the identifier") if shown.get("nothing_found") else ""
    scope = " " + badge("training", "objection to training") if shown.get("scope") == "training" else ""
    return badge(shown["status"]) + scope + found


def request_link(request_id: str) -> str:
    """A link to one request's page."""
    return f'<a href="/requests/{escape(request_id)}"><code>{escape(request_id)}</code></a>'


def sign_in_page(next_path: str, status: int = 200, error: str | None = None) -> HTMLResponse:
    """The form that takes a read token; with an error, it says what went wrong."""
    alert = f'<p class="error" role="alert" id="token-error">{escape(error)}</p>' if error else ""
    described = "token-hint token-error" if error else "token-hint"
    invalid = ' aria-invalid="true"' if error else ""
    body = (
        "<h1>Sign in</h1><p class=\"lede\">The status of erasure requests, for the data protection officer.</p>"
        f'<form class="sign-in" method="post" action="/sign-in">{alert}'
        '<p><label for="token">API token with the read scope</label>'
        f'<input id="token" name="token" type="password" autocomplete="current-password" required '
        f'aria-describedby="{described}"{invalid}></p>'
        '<p class="hint" id="token-hint">A token from <code>[api.tokens]</code>. '
        "It is checked once; the browser then keeps a session of 8 hours, not the token.</p>"
        f'<input type="hidden" name="next" value="{escape(safe_next(next_path))}">'
        '<p><button type="submit">Sign in</button></p></form>'
    )
    return html_page("Sign in", body, signed_in=False, status=status)


def request_rows(requests: Iterable[Mapping[str, Any]], now: datetime, done: bool) -> list[tuple[str, list[str]]]:
    """The rows of a listing: open ones with days left, completed ones with when they completed."""
    rows = []
    for r in requests:
        flags = Counter(f["state"] for f in r["flags"])
        flagged = ", ".join(f"{n} {escape(s)}" for s, n in sorted(flags.items())) or "none"
        timing = when(r["completed_at"], day_only=True) if done else days_left(r["deadline"], now)
        rows.append(("late" if r["overdue"] else "", [
            request_link(r["request_id"]), status_badges(r), when(r["received_at"], day_only=True),
            when(r["deadline"], day_only=True), timing,
            f"<code>{escape(r['subject_ref'])}</code>", counted(s["status"] for s in r["systems"]), flagged,
        ]))
    return rows


def model_rows(models: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """The rows of the flagged model versions: their flags by state and the requests behind them."""
    rows = []
    for m in models:
        ids = [f["request_id"] for f in m["flags"]]
        links = ", ".join(request_link(i) for i in ids[:MODEL_REQUESTS_SHOWN])
        more = f" and {len(ids) - MODEL_REQUESTS_SHOWN} more" if len(ids) > MODEL_REQUESTS_SHOWN else ""
        states = sorted(Counter(f["state"] for f in m["flags"]).items())
        rows.append(("", [escape(m["model"]), escape(m["version"]),
                          " ".join(badge(state, f"{n} {state}") for state, n in states), links + more]))
    return rows


def system_rows(systems: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """One row per system of a request: its status, items, and why it is exempt or failed."""
    return [("", [
        escape(s["system"]), escape(s["kind"]), badge(s["status"]), str(s["attempts"]),
        "–" if s["items_erased"] is None else str(s["items_erased"]), when(s["finished_at"]),
        escape(s["reason"] or s["error"] or "–"),
    ]) for s in systems]


def flag_rows(flags: Iterable[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """One row per flagged model version of a request."""
    return [("", [
        escape(f["model"]), escape(f["version"]), ", ".join(f"<code>{escape(s)}</code>" for s in f["snapshots"]),
        badge(f["state"]), escape(f["reason"] or "–"), when(f["flagged_at"]),
    ]) for f in flags]


def refused_page(message: str, status: int = 403) -> HTMLResponse:
    """The answer to a form the page refuses: why, and the way back."""
    body = f'<h1>Not recorded</h1><p class="error" role="alert">{escape(message)}</p><p><a href="/">Back</a></p>'
    return html_page("Not recorded", body, signed_in=True, status=status)


def not_found_page() -> HTMLResponse:
    """The answer for an id that is malformed or that the store does not hold."""
    body = '<h1>No such request</h1><p><a href="/">Back to all requests</a></p>'
    return html_page("No such request", body, signed_in=True, status=404)
