"""The status page's preview of a received or in-progress request: what its erasure would take in each
system now (worker.engine.locate, from the request's sealed identifiers), and the model versions it would
flag. Counts, table names, templates and snapshot ids only: never a value, never a record. Each preview
is one `subject.located` audit event of the request; nothing else is recorded or changed."""

from __future__ import annotations

from html import escape
from typing import Any

from fastapi.responses import HTMLResponse

from worker.engine import locate
from worker.runtime import Runtime
from worker.surfaces.status_page.html import badge, html_page, table


def button(request_id: str, status: str) -> str:
    """The preview button of a request's page, for a request not yet done (else nothing)."""
    if status not in locate.OPEN:
        return ""
    return (f'<form method="get" action="/requests/{escape(request_id)}/preview">'
            '<button type="submit">Preview what erasure would take</button> '
            '<span class="hint">Counts only, read from each system now; nothing is changed.</span></form>')


def preview_page(rt: Runtime, request_id: str) -> HTMLResponse:
    """What the request's erasure would take, system by system (NoSuchRequest, RefusedError as locate's)."""
    located = locate.locate_request(rt, request_id)
    rid = escape(request_id)
    rows = [("", [escape(look["system"]), escape(look["kind"]),
                  badge("erased", "looked") if look["looked"] else badge("skipped", "not looked"),
                  "–" if look["items"] is None else str(look["items"]), _what(look["counts"]),
                  escape(look["error"] or look["note"] or "–")])
            for look in located.to_json()["systems"]]
    models = [("", [escape(m["model"]), escape(m["version"]), ", ".join(f"<code>{escape(s)}</code>"
                                                                       for s in m["snapshots"])])
              for m in located.models]
    body = [
        f'<nav aria-label="Breadcrumb"><a href="/">All requests</a> › <a href="/requests/{rid}">Request '
        f"<code>{rid}</code></a></nav>",
        f"<h1>Preview of request <code>{rid}</code></h1>",
        f'<p class="lede">What its erasure would take now: {located.items} item(s) in the systems that can '
        f"look (scope {escape(located.scope)}). Nothing was changed; the look is in the audit trail.</p>",
        table("Each system, as its erasure would find it now", ["System", "Kind", "Looked", "Items", "What",
                                                                  "Note"], rows, numeric=frozenset({3})),
        '<h2 id="models">Models it would flag</h2>',
        table("Model versions trained on a snapshot that holds this subject's data", ["Model", "Version", "Snapshots"],
              models) if models else "<p>No recorded model version was trained on a snapshot holding them.</p>",
    ]
    return html_page(f"Preview of {request_id}", "".join(body), signed_in=True)


def _what(counts: dict[str, Any]) -> str:
    """A preview's counts as a short list: rows per table, versions per template, rows per snapshot."""
    items = [f"<code>{escape(name)}</code>: {rows} row(s)" for name, rows in counts.get("tables", {}).items()]
    items += [f"<code>{escape(name)}</code>: {rows} row(s) kept (retained)"
              for name, rows in counts.get("retained", {}).items()]
    items += [f"<code>{escape(tpl)}</code>: {n['versions']} version(s), {n['delete_markers']} delete marker(s)"
              for tpl, n in counts.get("templates", {}).items() if isinstance(n, dict)]
    items += [f"<code>{escape(snapshot)}</code>: {n['rows']} row(s)" + (f" in {len(n['files'])} file(s)"
                                                                       if n.get("files") else "")
              for snapshot, n in counts.get("snapshots", {}).items()]
    items += [f"<code>{escape(str(e.get('template') or e.get('prefix') or e.get('key')))}</code>: {e['removed']}"
              for section in ("keys", "scan", "hashes", "sets", "sorted_sets") for e in counts.get(section, [])]
    items += [f"{counts['items']} item(s)"] if "items" in counts else []
    return "<br>".join(items) or "–"
