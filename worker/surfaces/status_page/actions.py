"""What a DPO does on a request's page, with a token that has the `operate` scope: retry a failed request,
extend its deadline once, exempt one of its systems (Art. 17(3)), move one of its model flags along its
lifecycle. Each form carries the session's CSRF token (routes.py checks it and the scope), and each action
is the very engine function its command calls (`erasure retry`, `extend`, `exempt`, `models
ack|retrained|waive`), which holds every rule; the audit event names the token that did it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from worker.engine import deadlines, exemptions, fanout, flags, intake
from worker.errors import InputError
from worker.runtime import Runtime
from worker.store.models import FlagState, RequestStatus, SystemStatus

FORM_FIELDS = 8  # csrf and an action's fields, with room for a browser's extra
DONE = {  # the line the request's page shows after an action (a fixed text: nothing sent is echoed)
    "retry": "Retried: the failed systems were sent again, with fresh attempts.",
    "extend": "The deadline was extended.",
    "exempt": "The system was exempted.",
    "flag": "The model flag was moved.",
}
FLAG_TARGETS = (FlagState.ACKNOWLEDGED, FlagState.RETRAINED, FlagState.WAIVED)  # `erasure models ack|retrained|waive`
SETTLED = (SystemStatus.ERASED, SystemStatus.NOT_FOUND, SystemStatus.SKIPPED, SystemStatus.EXEMPT)


def by(rt: Runtime, token_hash: str) -> str:
    """Who acted, as the audit trail names them: the token's name in `[api.tokens]`, or without one the
    first 12 hex digits of its SHA-256 (as a config error names a token, and `[api.tokens]` can be searched)."""
    return rt.config.api.names.get(token_hash) or f"token {token_hash[:12]}"


def run(rt: Runtime, action: str, request_id: str, form: Mapping[str, str], who: str) -> None:
    """Do one action from its form through the engine; InputError, RefusedError or NoSuchRequest, with
    nothing changed, if it may not be done."""
    reason = form.get("reason", "")
    if action == "retry":
        fanout.retry(rt, request_id, by=who)
    elif action == "extend":
        deadlines.extend(rt, request_id, _months(form.get("months")), reason, by=who)
    elif action == "exempt":
        exemptions.exempt(rt, request_id, form.get("system", ""), reason, by=who)
    elif action == "flag":
        to = form.get("to")
        if to not in set(FLAG_TARGETS):
            raise InputError(f"to: one of {', '.join(FLAG_TARGETS)}")
        flags.change(rt, form.get("model", ""), form.get("version", ""), FlagState(to), reason,
                     request_id=request_id, by=who)
    else:
        raise InputError(f"no such action: the page offers {', '.join(DONE)}")


def _months(text: str | None) -> int:
    """The form's months as a number for the engine to check; InputError if it is none."""
    text = (text or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 2:
        raise InputError("months: 1 or 2 (Art. 12(3) allows up to two further months)")
    return int(text)


def section(cert: Mapping[str, Any], csrf: str | None) -> str:
    """The request's actions: with `csrf` (a session whose token may act) the forms the request's state
    offers; without, a line saying how to get them."""
    if csrf is None:
        return ('<section aria-labelledby="act"><h2 id="act">Act</h2><p class="hint">A token with the '
                "<code>operate</code> scope retries, extends, exempts and moves model flags here; or "
                "<code>erasure retry|extend|exempt</code> and <code>erasure models ack|retrained|waive</code>."
                "</p></section>")
    rid = escape(cert["request_id"])
    parts = []
    if cert["status"] == RequestStatus.FAILED:
        parts.append(_form(rid, "retry", csrf, "Retry the failed systems", ""))
    if cert["status"] in deadlines.OPEN and not cert["extended"]:
        months = ('<label for="act-months">Extend by</label><select id="act-months" name="months">'
                  '<option value="1">1 month</option><option value="2">2 months</option></select>')
        parts.append(_form(rid, "extend", csrf, "Extend the deadline",
                           months + _reason("act-extend-reason", "Reason, as told to the data subject",
                                            intake.MAX_TEXT)))
    exemptable = [s["system"] for s in cert["systems"] if s["status"] not in SETTLED]
    if exemptable:
        choices = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in exemptable)
        parts.append(_form(rid, "exempt", csrf, "Exempt the system",
                           f'<label for="act-system">System</label><select id="act-system" name="system">{choices}'
                           "</select>" + _reason("act-exempt-reason", "Legal ground (Art. 17(3))",
                                                 flags.REASON_LIMIT)))
    parts += _flag_forms(rid, cert["flagged_models"], csrf)
    listed = "".join(parts) or "<p>Nothing to do here: the request has no action left.</p>"
    return (f'<section aria-labelledby="act"><h2 id="act">Act</h2><p class="lede">Each action is recorded in '
            f"the audit trail with this session's token.</p>{listed}</section>")


def _flag_forms(rid: str, flagged: Sequence[Mapping[str, Any]], csrf: str) -> list[str]:
    """One form for each of the request's model flags that is not final, offering the moves it may make."""
    forms = []
    for n, flag in enumerate(f for f in flagged if f["state"] not in flags.FINAL):
        name = f'{escape(flag["model"])} {escape(flag["version"])}'
        moves = "".join(f'<option value="{escape(to)}">{escape(to)}</option>'
                        for to in FLAG_TARGETS if to in flags.MOVES[flag["state"]])
        fields = (f'<input type="hidden" name="model" value="{escape(flag["model"])}">'
                  f'<input type="hidden" name="version" value="{escape(flag["version"])}">'
                  f'<label for="flag-to-{n}">Flag of {name} ({escape(flag["state"])}) to</label>'
                  f'<select id="flag-to-{n}" name="to">{moves}</select>'
                  + _reason(f"flag-reason-{n}", "Reason", flags.REASON_LIMIT))
        forms.append(_form(rid, "flag", csrf, f"Move the flag of {name}", fields))
    return forms


def _reason(field_id: str, label: str, limit: int) -> str:
    """A required one-line reason field with its label."""
    return (f'<label for="{field_id}">{escape(label)}</label>'
            f'<input id="{field_id}" name="reason" maxlength="{limit}" required>')


def _form(rid: str, action: str, csrf: str, button: str, fields: str) -> str:
    """One action's form: POST to the request's action route with the session's CSRF token."""
    return (f'<form class="task act" method="post" action="/requests/{rid}/{action}">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">{fields}'
            f'<span class="buttons"><button type="submit">{escape(button)}</button></span></form>')
