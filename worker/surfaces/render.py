"""How the command line shows things to people: aligned tables and one request's status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as aligned columns under a header, for people."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def show_status(status: dict[str, Any]) -> str:
    """One request's status for people."""
    lines = [
        f"request   {status['request_id']}  {status['status']}",
        f"subject   {status['subject_ref']}",
        f"received  {status['received_at']}   deadline {status['deadline']}"
        f"   completed {status['completed_at'] or '-'}",
    ]
    if status.get("scope") == "training":
        lines.append("scope     training: an objection to training use; only systems marked training are erased,"
                     " the others skipped and their data kept")
    else:
        lines.append("scope     all")
    if status.get("overdue"):
        lines.append("overdue   the deadline has passed")
    if status.get("nothing_found"):
        lines.append("nothing   found in any system: check the identifier before telling the person")
    if status.get("extended"):
        extended = status["extended"]
        lines.append(f"extended  by {extended['months']} month(s) on {extended['at']}"
                     f" (was {extended['original_deadline']}): {extended['reason']}")
    if status.get("error"):
        lines.append(f"error     {status['error']}")
    lines += ["", table(
        ["SYSTEM", "KIND", "STATUS", "ATTEMPTS", "ITEMS", "FINISHED", "ERROR / REASON"],
        [[s["system"], s["kind"], s["status"], s["attempts"], s["items_erased"], s["finished_at"],
          s["error"] or s["reason"]] for s in status["systems"]],
    )]
    for flag in status["flags"]:
        lines.append(f"flagged model {flag['model']} {flag['version']}  {flag['state']}"
                     f"  trained on {', '.join(flag['snapshots'])}")
    return "\n".join(lines)
