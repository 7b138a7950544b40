"""Which columns look personal, and which hold an identifier type: by the column's name (email,
phone, name, address, ip, birth date, user id, ...), by a hint, and by the share of sampled values
that an identifier type's pattern takes. A finding says why, with a percentage, never a value."""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker.discover.identifiers import IdType
from worker.discover.model import Column, Table

TEXT, TEXT_OR_NUMBER, DATES = ("text", "other"), ("text", "integer", "number", "other"), ("date", "datetime", "text")
TYPED_SHARE = 0.8  # at least this share of sampled values matching a type's pattern: the column holds it

# (category, rule on the snake_case name, strong, kinds): a weak rule counts only in a table with a strong one
NAME_RULES: tuple[tuple[str, str, bool, tuple[str, ...]], ...] = (
    ("email", r"(^|_)(e_?mail|mail)(_?addr(ess)?)?(_|$)", True, TEXT),
    ("phone", r"(^|_)(phone|mobile|telephone|tel|cell|msisdn|fax)(_?(no|num|number))?(_|$)", True, TEXT_OR_NUMBER),
    ("name", r"(^|_)(first|last|given|family|middle|full|display|maiden|sur|fore|user|nick|login|holder|"
             r"customer|contact|person|member|recipient|sender)_?name(_|$)|^username$", True, TEXT),
    ("name", r"^name$", False, TEXT),
    ("address", r"(^|_)(street|address|addr|address_line_?[0-9]?|zip|zip_?code|post_?code|postal_?code|"
                r"house|house_?(no|number)|apartment|apt)(_|$)", True, TEXT_OR_NUMBER),
    ("address", r"^(city|town|state|province|county|region|country)$", False, TEXT),
    ("ip", r"(^|_)(ip|ip_?addr(ess)?|ipv4|ipv6|remote_addr|client_ip)(_|$)", True, TEXT),
    ("birth date", r"(^|_)(birth|birthday|birth_?date|date_of_birth|dob|born)(_|$)", True, DATES),
    ("national id", r"(^|_)(ssn|social_security|national_id|passport|tax_id|tin|nin|id_card|driver_?licen[cs]e)"
                    r"(_?(no|num|number))?(_|$)", True, TEXT_OR_NUMBER),
    ("payment", r"(^|_)(ccn|card_?(no|num|number)|credit_?card|pan|iban|bank_?account|account_?number|cvv|cvc)"
                r"(_|$)", True, TEXT_OR_NUMBER),
    ("online id", r"(^|_)(device_?id|cookie_?id|advertising_?id|idfa|gaid|user_?agent|mac_?addr(ess)?|"
                  r"fingerprint)(_|$)", True, TEXT),
    ("location", r"(^|_)(latitude|longitude|lat|lng|lon|geo|gps|geolocation)(_|$)", False, TEXT_OR_NUMBER),
    ("special category", r"(^|_)(ethnicity|religion|race|health|diagnosis|sexual_orientation|disability)(_|$)",
     True, TEXT_OR_NUMBER),
    ("gender", r"(^|_)(gender|sex)(_|$)", False, TEXT),
    ("user id", r"^(user|customer|member|account|person|client|patient|subscriber|owner)_?id$|^uid$", True,
     TEXT_OR_NUMBER),
)
COMPILED = tuple((category, re.compile(rule), strong, kinds) for category, rule, strong, kinds in NAME_RULES)


@dataclass(frozen=True)
class Finding:
    """A column that looks personal: its category, whether that is strong evidence, the identifier types
    it holds, and why (a name rule, a hint, a percentage of sampled values)."""

    column: str
    category: str
    strong: bool
    types: tuple[str, ...]
    evidence: str


def snake(name: str) -> str:
    """`shippingAddressId` and `Shipping-Address ID` as `shipping_address_id`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def by_name(column: Column) -> tuple[str, bool] | None:
    """The category a column's name puts it in, and whether the rule is strong; None if no rule applies."""
    name = snake(column.name)
    for category, rule, strong, kinds in COMPILED:
        if column.kind in kinds and rule.search(name):
            return category, strong
    return None


def percent(part: int, whole: int) -> str:
    """`100%`, `50%`, `<1%`: a share written for a comment."""
    share = 100 * part / whole if whole else 0.0
    return "<1%" if 0 < share < 1 else f"{share:.0f}%"


def classify(table: Table, types: list[IdType]) -> dict[str, Finding]:
    """The columns of a table that look personal, each with the identifier types it holds."""
    found: dict[str, Finding] = {}
    for column in table.columns.values():
        finding = _finding(table, column, types)
        if finding is not None:
            found[column.name] = finding
    return found


def _finding(table: Table, column: Column, types: list[IdType]) -> Finding | None:
    """One column's finding, or None if nothing says it is personal."""
    link = table.link(column.name)
    named = None if link else by_name(column)
    sampled = table.tallies.get(column.name)
    reasons, held, liked = ["by name"] if named else [], list[str](), list[str]()
    for kind in types:
        matched = dict(sampled.matches).get(kind.name, 0) if sampled and not kind.generic else 0
        if kind.hinted(table.name, column.name):
            held.append(kind.name)
            reasons.append(f"--identifier {kind.name}")
        elif not link and (named and named[0] == kind.category or column.name == kind.name):
            held.append(kind.name)
        elif not link and not named and sampled and matched and matched >= TYPED_SHARE * sampled.values:
            held.append(kind.name)
        if matched and sampled:
            liked.append(kind.name)
            reasons.append(f"{percent(matched, sampled.values)} of {sampled.values} sampled values match "
                           f"{kind.name}'s pattern")
        elif kind.name in held and sampled and sampled.values and not kind.generic:
            reasons.append(f"none of {sampled.values} sampled values matches {kind.name}'s pattern: check")
    if not (named or held or liked):
        return None
    category = named[0] if named else held[0] if held else f"values like {liked[0]}"
    strong = bool(named and named[1]) or bool(held or liked)
    return Finding(column.name, category, strong, tuple(held), "; ".join(reasons))


def personal(findings: dict[str, Finding]) -> dict[str, Finding]:
    """The findings that count: every strong one, and weak ones where the table has a strong one."""
    return findings if any(finding.strong for finding in findings.values()) else {}
