"""PromQL as the deploy tests read it: what a query of the dashboard or an alerting rule reads (metric
names, label names, matchers), and what a real scrape of /metrics serves, to hold one against the other."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<range>\[[^\]]*\])|(?P<duration>\d+(?:ms|[smhdwy])\b)'
                   r"|(?P<number>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}]))")
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"bool", "and", "or", "unless", "offset"}


@dataclass
class Query:
    """What one PromQL query reads: metric names, label names, and label matchers."""

    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    matchers: list[tuple[str, str, str]] = field(default_factory=list)


def tokens(expr: str) -> list[tuple[str, str]]:
    """A PromQL expression's tokens as (kind, text); a character no token takes fails the test."""
    found, at = [], 0
    while at < len(expr.rstrip()):
        match = TOKEN.match(expr, at)
        assert match is not None, f"cannot read {expr[at:]!r} in {expr!r}"
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        at = match.end()
    return found


def read_query(expr: str) -> Query:
    """What a PromQL query (or Grafana's label_values(metric, label)) reads."""
    query, words, at = Query(), tokens(expr), 0
    while at < len(words):
        kind, text = words[at]
        following = words[at + 1][1] if at + 1 < len(words) else None
        if kind == "name" and text == "label_values" and following == "(":
            query.metrics.add(words[at + 2][1])
            query.labels.add(words[at + 4][1])
            at += 6
            continue
        if kind == "name" and text in GROUPING and following == "(":
            at += 2
            while words[at][1] != ")":
                if words[at][0] == "name":
                    query.labels.add(words[at][1])
                at += 1
        elif kind == "name" and text not in KEYWORDS and following != "(" and following not in GROUPING:
            query.metrics.add(text)
        elif text == "{":
            at += 1
            while words[at][1] != "}":
                label, op, value = words[at][1], words[at + 1][1], json.loads(words[at + 2][1])
                query.labels.add(label)
                query.matchers.append((label, op, value))
                at += 3 + (words[at + 3][1] == ",")
        at += 1
    return query


@dataclass(frozen=True)
class Served:
    """What /metrics serves: metric names, each one's label names, and the values each label takes."""

    labels: dict[str, set[str]]
    values: dict[str, set[str]]


def served_by(scrape: str) -> Served:
    """What a scrape's text serves; a family without samples fails (its labels would be unknown)."""
    labels: dict[str, set[str]] = {}
    values: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(scrape):
        assert family.samples, f"{family.name} has no samples, so its labels are unknown (seed the store)"
        for sample in family.samples:  # a counter's samples are named NAME_total
            labels.setdefault(sample.name, set()).update(sample.labels)
            for label, value in sample.labels.items():
                values[label].add(value)
    return Served(labels, dict(values))
