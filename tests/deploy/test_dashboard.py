"""The Grafana dashboard: a well-formed dashboard whose every query uses only the metrics, labels and
label values that a real `erasure api` serves on /metrics (read from a seeded PostgreSQL store; the
PromQL reader is tests/helpers/promql.py, the scrape the `served` fixture)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.helpers import DEPLOY, Served, read_query

DASHBOARD = DEPLOY / "grafana" / "erasure.json"


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def queries() -> list[str]:
    """Every query of the dashboard: its panels' targets and its template variables'."""
    found = [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]
    found += [v["query"]["query"] for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    return found


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
