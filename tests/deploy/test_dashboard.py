"""The Grafana dashboard: a well-formed dashboard whose every query uses only the metrics, labels and
label values that a real `erasure api` serves on /metrics (read from a seeded PostgreSQL store)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import DEPLOY, Api

DASHBOARD = DEPLOY / "grafana" / "erasure.json"
TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<range>\[[^\]]*\])|(?P<number>\d+(?:\.\d+)?)'
                   r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)|(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}]))")
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


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def queries() -> list[str]:
    """Every query of the dashboard: its panels' targets and its template variables'."""
    found = [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]
    found += [v["query"]["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    return found


@dataclass(frozen=True)
class Served:
    """What /metrics serves: metric names, each one's label names, and the values each label takes."""

    labels: dict[str, set[str]]
    values: dict[str, set[str]]


@pytest.fixture(scope="module")
def served(api: Api) -> Served:
    """The metrics of a real scrape of the API, with the read token of deploy/erasure.toml."""
    answer = httpx.get(f"{api.url}/metrics", headers={"Authorization": "Bearer compose-dev-token"}, timeout=30)
    assert answer.status_code == 200, answer.text
    labels: dict[str, set[str]] = {}
    values: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(answer.text):
        assert family.samples, f"{family.name} has no samples, so its labels are unknown (seed the store)"
        labels[family.name] = set()
        for sample in family.samples:
            labels[family.name] |= set(sample.labels)
            for label, value in sample.labels.items():
                values[label].add(value)
    return Served(labels, dict(values))


def test_the_dashboard_is_well_formed() -> None:
    """Unique uid, panel ids and ref ids; every panel on the grid, on the template's Prometheus."""
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) > 5
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["expr"] for t in panel["targets"])


def test_the_query_reader_reads_promql() -> None:
    """The reader behind the next test finds metrics, grouping labels and matchers, and no function
    or keyword, in a query of the dashboard's shape."""
    read = read_query('sum by (kind) (max by (kind, status) (erasure_systems{status=~"pending|running", '
                      'kind=~"$kind"})) + max(delta(erasure_requests{status="completed"}[1d]))')
    assert read.metrics == {"erasure_systems", "erasure_requests"}
    assert read.labels == {"kind", "status"}
    assert read.matchers == [("status", "=~", "pending|running"), ("kind", "=~", "$kind"),
                             ("status", "=", "completed")]


@pytest.mark.parametrize("expr", queries())
def test_queries_use_only_what_the_api_serves(served: Served, expr: str) -> None:
    """Each query's metrics are served, its labels are those metrics' labels, and each literal label
    value it matches (every alternative of a regex) is one the API reports."""
    read = read_query(expr)
    assert read.metrics and read.metrics <= set(served.labels), sorted(read.metrics - set(served.labels))
    offered = set().union(*(served.labels[m] for m in read.metrics))
    assert read.labels <= offered, sorted(read.labels - offered)
    for label, op, value in read.matchers:
        if "$" in value:
            continue  # a template variable, filled from label_values(...) of a served metric
        assert op in ("=", "=~"), f"{label}{op}{value!r}: a negative matcher hides a typo"
        for alternative in value.split("|") if op == "=~" else [value]:
            assert alternative in served.values[label], f"{label}={alternative!r} is never served"


def test_panels_never_add_up_replicas() -> None:
    """Every replica of the API reports the same store-wide numbers, so a query aggregates across
    instances with max() before anything else: no sum() straight over a metric."""
    for expr in queries():
        assert not re.search(r"sum\s*(by\s*\([^)]*\)\s*)?\(\s*erasure_", expr), expr
