"""The alerting rules (deploy/prometheus/rules.yaml): promtool's own rule tests pass, every expression
reads only what a real `erasure api` serves on /metrics (or RabbitMQ's plugin, for the queues), each
alert says what it is and links to its section of the runbook, and the Prometheus Operator's
PrometheusRule holds the same rules (its schema is checked with the other manifests in test_kubernetes)."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.helpers import DEPLOY, ROOT, WORKERS, Served, container_command, deployment, of_kind, read_query

RULES = DEPLOY / "prometheus" / "rules.yaml"
RULE_TESTS = DEPLOY / "prometheus" / "rules.test.yaml"
RUNBOOK = ROOT / "docs" / "runbook.md"
# not the API's: RabbitMQ's Prometheus plugin (rabbitmq_prometheus), scraped per object
FROM_RABBITMQ = {"rabbitmq_queue_consumers": {"vhost", "queue"}}


def rules() -> list[dict[str, Any]]:
    """Every alerting rule of rules.yaml."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown text's headings."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def consumed_queues() -> set[str]:
    """The queues the worker Deployments consume."""
    found: set[str] = set()
    for name in WORKERS:
        command = container_command(name)
        found |= set(command[command.index("--queues") + 1].split(","))
    return found


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it)")
def test_promtool_checks_the_rules_and_runs_their_tests() -> None:
    """`promtool check rules` accepts rules.yaml and `promtool test rules` passes rules.test.yaml:
    each alert fires on the series that should raise it, and not on the others."""
    for command in (["promtool", "check", "rules", str(RULES)], ["promtool", "test", "rules", str(RULE_TESTS)]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_rule_test() -> None:
    """rules.test.yaml tests every alert of rules.yaml, and each one firing at least once."""
    tested = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    firing = {case["alertname"] for test in tested for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert firing == {rule["alert"] for rule in rules()}


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_rules_use_only_what_is_served(served: Served, rule: dict[str, Any]) -> None:
    """Each rule's metrics are served by the API (or by RabbitMQ's plugin, named in FROM_RABBITMQ),
    its labels are those metrics' labels, and each literal label value it matches is one served."""
    read = read_query(rule["expr"])
    offered = {**served.labels, **FROM_RABBITMQ}
    assert read.metrics and read.metrics <= set(offered), sorted(read.metrics - set(offered))
    labels = set().union(*(offered[m] for m in read.metrics))
    assert read.labels <= labels, sorted(read.labels - labels)
    for label, op, value in read.matchers:
        assert op in ("=", "=~"), f"{label}{op}{value!r}: a negative matcher hides a typo"
        known = consumed_queues() if label == "queue" else served.values[label]
        for alternative in value.split("|") if op == "=~" else [value]:
            assert alternative in known, f"{label}={alternative!r} is never served"


def test_the_queue_rule_watches_every_queue_a_worker_consumes() -> None:
    """The rule on consumers names exactly the queues the worker Deployments consume (not the
    dead-letter queue, which nothing consumes)."""
    (rule,) = [r for r in rules() if "rabbitmq_queue_consumers" in r["expr"]]
    ((_, _, queues),) = [m for m in read_query(rule["expr"]).matchers if m[0] == "queue"]
    assert set(queues.split("|")) == consumed_queues()


def test_rules_never_add_up_replicas() -> None:
    """Every API replica reports the same store-wide numbers: no rule sums a metric across them."""
    for rule in rules():
        assert not re.search(r"sum\s*(by\s*\([^)]*\)\s*)?\(", rule["expr"]), rule["alert"]


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_alert_says_what_and_links_to_its_runbook_section(rule: dict[str, Any]) -> None:
    """Each alert has a severity, a summary, a description, and a runbook_url to a section of
    docs/runbook.md that exists."""
    assert rule["labels"]["severity"] in ("warning", "critical")
    notes = rule["annotations"]
    assert notes["summary"].strip() and len(notes["description"]) > len(notes["summary"])
    page, _, anchor = notes["runbook_url"].partition("#")
    assert page == "docs/runbook.md" and anchor in anchors(RUNBOOK.read_text(encoding="utf-8")), notes["runbook_url"]


def test_the_prometheus_rule_holds_the_same_rules() -> None:
    """deploy/k8s's PrometheusRule has exactly the groups of rules.yaml, so the two never drift."""
    (manifest,) = of_kind("PrometheusRule")
    assert manifest.body["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert manifest.body["metadata"]["labels"]["app.kubernetes.io/name"] == \
        deployment("erasure-api").body["metadata"]["labels"]["app.kubernetes.io/name"]
