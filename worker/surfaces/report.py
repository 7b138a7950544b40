"""The certificate of erasure: one request as a DPO hands it to a regulator, as JSON (`build`)
and as Markdown (`markdown`), with the audit trail's head it was drawn from. It never holds an
identifier's value: the subject is its subject_ref, keys are written as their templates, and the
identifiers looked for by their types. A request every system found nothing for says so, never
that anything was erased. A request of scope "training" is an objection to training use, and its
certificate says so: the systems it skipped kept the subject's data on purpose, and are never
called erased."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from worker.engine import audit
from worker.errors import NoSuchRequest
from worker.runtime import Runtime
from worker.store.models import ModelFlag, Request, RequestStatus, Scope, SystemStatus, utcnow
from worker.surfaces import views

LISTED = 20  # evidence entries written out per system in Markdown; the JSON has them all
OUTCOMES: dict[str, str] = {
    RequestStatus.COMPLETED: "every system was erased, held nothing of the subject's, or is exempt",
    RequestStatus.FAILED: "at least one system could not be erased (see its error)",
    RequestStatus.IN_PROGRESS: "erasure is under way",
    RequestStatus.RECEIVED: "received, erasure not yet started",
}
TRAINING_COMPLETED = ("every system marked as training data was erased, held nothing of the subject's, or is "
                      "exempt; the others were skipped")
NOTHING_FOUND = "nothing found: no system held anything under the identifiers looked for"
NOTHING_FOUND_IN_SCOPE = "nothing found: no system in scope held anything under the identifiers looked for"
SYSTEM_OUTCOMES = {"erased": "erased", "not_found": "nothing found", "exempt": "exempt", "failed": "failed",
                   "pending": "pending", "running": "running", "skipped": "skipped, kept on purpose"}
SCOPES = {
    "all": "an erasure of all the subject's data (Art. 17 GDPR)",
    "training": "an objection to the use of the subject's data for training (Art. 21 GDPR), not an erasure "
                "of all their data: only the systems marked as training data are in its scope; the subject's "
                "data in the other systems is kept on purpose, and they are listed as skipped",
}


def build(rt: Runtime, request_id: str) -> dict[str, Any]:
    """The certificate of one request (NoSuchRequest if unknown): the contract's fields, each
    system's evidence, the flagged models with their state, the identifier types looked for (as the
    audit trail recorded them: the values are dropped on completion), and the audit trail's head."""
    with rt.transaction() as session:
        request = session.get(Request, request_id, options=[selectinload(Request.systems)])
        if request is None:
            raise NoSuchRequest(f"no request {request_id}")
        flags = list(session.scalars(select(ModelFlag).where(ModelFlag.request_id == request_id)))
        files = views.files_by_request(session, [request_id]) if flags else {}
        status = views.request_json(request, flags, files.get(request_id, {}))
        events, head = audit.count(session, request_id), audit.head(session)
        types = audit.identifier_types(session, request_id)
        systems = [
            {**shown, "recheck_at": views.timestamp(task.recheck_at), "evidence": task.evidence,
             "evidence_sha256": audit.digest(task.evidence) if task.evidence else None}
            for shown, task in zip(status["systems"], request.systems, strict=True)
        ]
        now = utcnow()
        if request.completed_at is not None:
            met: bool | None = request.completed_at <= request.deadline
        else:
            met = False if now > request.deadline else None  # still open: not decided yet
    report = {key: status[key] for key in ("request_id", "subject_ref", "status", "scope", "nothing_found",
                                           "received_at", "deadline", "extended", "completed_at", "error")}
    return report | {
        "scope_statement": SCOPES.get(status["scope"], status["scope"]),
        "skipped_systems": [s["system"] for s in systems if s["status"] == SystemStatus.SKIPPED],
        "identifier_types": types,
        "deadline_met": met,
        "systems": systems,
        "flagged_models": status["flags"],
        "audit": {"events": events, "head": head.hash, "head_seq": head.seq},
        "drawn_at": views.timestamp(now),
    }


def markdown(report: Mapping[str, Any]) -> str:
    """The certificate as a Markdown document a regulator can read."""
    empty = report.get("nothing_found", False)
    training = report.get("scope") == Scope.TRAINING
    outcome = _outcome(report["status"], empty, training)
    asked = (f"Objection to training use {_code(report['request_id'])} under Art. 21 GDPR" if training
             else f"Erasure request {_code(report['request_id'])} under Art. 17 GDPR")
    lines = [
        ("# Certificate of an objection to training use" if training else "# Certificate of erasure")
        + (": nothing found" if empty else ""),
        "",
        f"{asked}, drawn {report['drawn_at']} by erasure-worker from its records and its audit trail.",
        "",
        "| | |",
        "|---|---|",
        f"| Data subject | {_code(report['subject_ref'])}, a keyed reference to the person: "
        "no identifier of theirs is written in this certificate |",
        f"| Scope | **{report.get('scope', Scope.ALL)}**: {report.get('scope_statement') or SCOPES['all']} |",
        f"| Outcome | **{report['status']}**: {outcome} |",
        f"| Looked for | {_types(report.get('identifier_types', []))} |",
        f"| Received | {report['received_at']} |",
        f"| Deadline | {report['deadline']}{_extension(report.get('extended'))} |",
        f"| Completed | {report['completed_at'] or 'not yet'}{_deadline_met(report['deadline_met'])} |",
    ]
    if report.get("error"):
        lines.append(f"| Error | {_cell(report['error'])} |")
    if training:
        lines += ["", f"**{kept_on_purpose_text(report.get('skipped_systems', []))}**"]
    if empty:
        lines += ["", f"**{nothing_found_text(report.get('identifier_types', []))}**"]
    counted = "Items found" if empty else "Items erased"  # every count is 0: nothing to call erased
    lines += ["", "## Systems", "", f"| System | Kind | Outcome | {counted} | Finished |", "|---|---|---|---|---|"]
    lines += [f"| {_cell(s['system'])} | {s['kind']} | {SYSTEM_OUTCOMES.get(s['status'], s['status'])} "
              f"| {_dash(s['items_erased'])} | {_dash(s['finished_at'])} |" for s in report["systems"]]
    for system in report["systems"]:
        lines += ["", f"### {system['system']} ({system['kind']}): {SYSTEM_OUTCOMES.get(system['status'])}", ""]
        lines += [f"- {line}" for line in _system_lines(system)]
    lines += ["", "## Exemptions (Art. 17(3))", ""]
    exempt = [s for s in report["systems"] if s["status"] == "exempt"]
    lines += [f"- **{s['system']}**: {s['reason']}. "
              + (f"Erasure is tried again from {s['recheck_at']}, once this ends." if s["recheck_at"]
                 else "Kept with no end date.") for s in exempt]
    if not exempt:
        lines.append("None among the systems in scope; the skipped systems kept the subject's data on purpose."
                     if training else "None: nothing of the subject's was kept.")
    lines += ["", "## Models trained on the subject's data", ""]
    flags = report["flagged_models"]
    if flags:
        lines += ["| Model | Version | Snapshots that held the subject | State | Reason |", "|---|---|---|---|---|"]
        lines += [f"| {_cell(f['model'])} | {_cell(f['version'])} | {', '.join(_code(s) for s in f['snapshots'])} "
                  f"| {f['state']} | {_cell(f['reason'] or '-')} |" for f in flags]
    else:
        lines.append("No recorded model version was trained on a snapshot that held the subject's data.")
    trail = report["audit"]
    lines += [
        "", "## Audit trail", "",
        f"{trail['events']} events of this request's life are in the audit trail, each one's SHA-256 chained "
        "to the event before it. When this certificate was drawn the trail's head was event "
        f"{trail['head_seq']}, `{trail['head']}`.",
        "",
        "To check that no event up to that head has been changed, removed or inserted since, run",
        "",
        f"    erasure audit verify --head {trail['head']}",
        "",
        "It recomputes every hash from the first event and exits 0 only if the chain is whole and holds this head.",
        "",
    ]
    return "\n".join(lines)


def _outcome(status: str, empty: bool, training: bool) -> str:
    """What the request's status means, in words, for its scope."""
    if empty:
        return NOTHING_FOUND_IN_SCOPE if training else NOTHING_FOUND
    if training and status == RequestStatus.COMPLETED:
        return TRAINING_COMPLETED
    return OUTCOMES.get(status, status)


def kept_on_purpose_text(skipped: list[str]) -> str:
    """What an objection to training use leaves, naming the systems it skipped."""
    kept = (f"the subject's data in {', '.join(_code(s) for s in skipped)} was kept on purpose" if skipped
            else "no system was skipped")
    return (f"This is an objection to training use, not an erasure of all the subject's data: only the "
            f"systems marked as training data were in its scope, and {kept}.")


def nothing_found_text(types: list[str]) -> str:
    """What a request every system found nothing for means, naming the identifier types looked for."""
    looked = f"the identifier types {', '.join(_code(t) for t in types)}" if types else \
        "the identifiers given (their types were not recorded)"
    return (f"Nothing was found for {looked}: nothing was erased. "
            "Check the identifiers before telling the person the erasure is done.")


def _types(types: list[str]) -> str:
    """The identifier types looked for, as a table cell; never their values."""
    return ("identifier types " + ", ".join(_code(t) for t in types) + ", their values not written here"
            if types else "the identifier types were not recorded")


def _system_lines(system: Mapping[str, Any]) -> list[str]:
    """What one system's evidence shows, one line per table, object version or file."""
    evidence = system.get("evidence") or {}
    lines = [f"Reason: {system['reason']}"] if system.get("reason") else []
    lines += [f"Error: {system['error']}"] if system.get("error") else []
    found = [_table_line(t) for t in evidence.get("tables", [])]
    found += [f"bucket {_code(evidence['bucket'])}: version {_code(o.get('version_id'))} of {_code(o.get('key'))}"
              f"{' (a delete marker)' if o.get('delete_marker') else ''} removed" for o in evidence.get("objects", [])]
    found += [f"bucket {_code(evidence['bucket'])}: version {_code(o.get('version_id'))} of {_code(o.get('key'))} "
              f"kept under {o.get('lock')}" + (f" until {o['retain_until']}" if o.get("retain_until") else "")
              for o in evidence.get("kept", [])]
    found += [f"file {_code(f.get('file'))}{' of snapshot ' + _code(f['snapshot']) if f.get('snapshot') else ''}: "
              f"{_count(f.get('rows_removed', 0), 'row')} removed"
              + (f", {_count(f['older_versions_removed'], 'older version')} removed"
                 if f.get("older_versions_removed") else "") for f in evidence.get("files", [])]
    if "retained" in evidence:
        found.append("not touched: the configuration retains this whole system")
    if isinstance(evidence.get("manual"), Mapping):  # a manual system's task, settled by a person
        by_hand = evidence["manual"]
        done = "erased by hand" if by_hand.get("found") else "looked for by hand, nothing found"
        found.append(f"{done} by {by_hand.get('by')} at {by_hand.get('at')}: {by_hand.get('evidence')}")
    if system.get("status") == SystemStatus.SKIPPED:
        found.append("not touched: out of the request's scope, the subject's data here kept on purpose")
    if len(found) > LISTED:
        found = found[:LISTED] + [f"and {len(found) - LISTED} more (see the JSON certificate)"]
    lines += found
    lines += [f"an earlier pass erased {_count(e.get('items', 0), 'item')}" for e in evidence.get("earlier", [])]
    if system.get("evidence_sha256"):
        lines.append(f"evidence SHA-256 {_code(system['evidence_sha256'])}, as recorded in the audit trail")
    return lines or ["no evidence recorded"]


def _table_line(table: Mapping[str, Any]) -> str:
    if table.get("action") == "retain":
        retained = table.get("retained", {})
        until = f" until {retained['until']}" if retained.get("until") else ""
        return (f"table {_code(table['table'])}: {_count(table.get('rows_kept', 0), 'row')} kept, "
                f"retained{until} ({retained.get('reason')})")
    done = {"delete": "deleted", "anonymize": "anonymized"}.get(table.get("action", ""), table.get("action"))
    return f"table {_code(table['table'])}: {_count(table.get('rows', 0), 'row')} {done}"


def _extension(extended: Mapping[str, Any] | None) -> str:
    if not extended:
        return ""
    return (f", extended by {extended['months']} month(s) on {extended['at']} from {extended['original_deadline']}"
            f" (Art. 12(3)): {_cell(extended['reason'])}")


def _deadline_met(met: bool | None) -> str:
    return {True: ", within the deadline", False: ", **after the deadline**", None: ""}[met]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _code(text: Any) -> str:
    """Text as inline code, whatever backticks it holds."""
    text = str(text)
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _cell(text: Any) -> str:
    """Text fit for a table cell: a `|` would end the cell."""
    return str(text).replace("|", "\\|")
