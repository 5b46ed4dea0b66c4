"""The monitoring kit (docs/monitoring) queries only metrics ibgwd exports, or Prometheus's own."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import proctree
import pytest
import yaml

from ibgwd.metrics import build_registry
from ibgwd.status import ComponentStatus, GatewayStatus, State, Status

KIT = Path(__file__).resolve().parents[2] / "docs" / "monitoring"

# Series Prometheus itself attaches to every target.
PROMETHEUS_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
}
PROMQL_FUNCTIONS = {
    # aggregations
    *[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ],
    # functions used by dashboards and alerts (extend when the kit uses a new one)
    *[
        "abs",
        "absent",
        "absent_over_time",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
    ],
    *[
        "count_over_time",
        "delta",
        "deriv",
        "floor",
        "histogram_quantile",
        "idelta",
        "increase",
        "irate",
    ],
    *[
        "label_replace",
        "last_over_time",
        "max_over_time",
        "min_over_time",
        "rate",
        "resets",
        "round",
    ],
    *["scalar", "sort", "sort_desc", "sum_over_time", "time", "timestamp", "vector"],
}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENTIFIER = re.compile(r"(?<![\w.$:])[A-Za-z_:][\w:]*")


def tokens(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, function names) referenced by a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges and subqueries
    text = GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables outside matchers
    metrics, functions = set(), set()
    for m in IDENTIFIER.finditer(text):
        name = m.group(0)
        if name.lower() in PROMQL_KEYWORDS:
            continue
        if text[m.end() :].lstrip().startswith("("):
            functions.add(name)
        else:
            metrics.add(name)
    return metrics, functions


def full_status() -> Status:
    g = GatewayStatus(
        mode="paper",
        state=State.READY,
        api_port=4002,
        relay_port=4004,
        api_up=True,
        last_probe_timestamp=1.0,
        last_probe_latency_s=0.001,
        last_success_timestamp=1.0,
        probes_total=1,
        probe_failures_total=0,
        consecutive_failures=0,
    )
    relay = ComponentStatus("relay-paper", "u.service", "active", "running", 0, 1)
    return Status(
        instance="default",
        version="0",
        trading_mode="paper",
        state=State.READY,
        ready=True,
        status_text="",
        started_timestamp=1.0,
        ready_timestamp=2.0,
        gateways=(g,),
        components=(relay,),
        gateway_pids={"paper": proctree.launcher()},
    )


def exported_series_names() -> set[str]:
    registry = build_registry(full_status)
    return {s.name for family in registry.collect() for s in family.samples}


def dashboard_queries() -> Iterator[tuple[str, str]]:
    dashboard = json.loads((KIT / "grafana-dashboard.json").read_text())

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dashboard["panels"]):
        for t in p.get("targets", []):
            yield f"panel {p['title']!r} {t['refId']}", t["expr"]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            query = v["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            assert inner, f"variable {v['name']}: unexpected query {query!r}"
            yield f"variable {v['name']}", inner.group(1)


def alert_queries() -> Iterator[tuple[str, str]]:
    rules = yaml.safe_load((KIT / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield f"alert {rule.get('alert') or rule.get('record')}", rule["expr"]


KIT_QUERIES = [*dashboard_queries(), *alert_queries()]


def test_the_kit_has_queries_for_the_dashboard_and_the_alerts() -> None:
    assert sum(1 for where, _ in KIT_QUERIES if where.startswith("panel")) >= 20
    assert sum(1 for where, _ in KIT_QUERIES if where.startswith("alert")) >= 6


@pytest.mark.parametrize(("where", "expr"), KIT_QUERIES, ids=[w for w, _ in KIT_QUERIES])
def test_kit_query_references_only_exported_metrics(where: str, expr: str) -> None:
    metrics, functions = tokens(expr)
    assert metrics, f"{where}: no metric found in {expr!r}"
    unknown = metrics - exported_series_names() - PROMETHEUS_SERIES
    assert not unknown, f"{where}: {sorted(unknown)} not exported (query {expr!r})"
    assert functions <= PROMQL_FUNCTIONS, f"{where}: unknown functions {functions}"


def test_the_token_scanner_finds_metrics_and_ignores_labels_ranges_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, mode) (rate(a_bucket{job=~"$job", x="b c"}'
        "[$__rate_interval]))) > 1e3 and on (mode) b_total offset 5m unless absent(c)"
    )
    assert tokens(expr) == (
        {"a_bucket", "b_total", "c"},
        {"histogram_quantile", "sum", "rate", "absent"},
    )


def test_a_misspelled_metric_would_be_caught() -> None:
    metrics, _ = tokens("ibgwd_api_upp == 0")
    assert metrics - exported_series_names() == {"ibgwd_api_upp"}
