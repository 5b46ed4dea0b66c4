"""A real Prometheus server scrapes MetricsServer: values flip as snapshots change, and every
dashboard and alert query of docs/monitoring is valid PromQL over the real data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from metrics_samples import StatusHolder, realistic_status
from prom import PROMETHEUS, Prometheus, Result, value

from ibgwd.metrics import ListenAddress, MetricsServer, ProbeRecorder, build_registry

KIT = Path(__file__).resolve().parents[2] / "docs" / "monitoring"

pytestmark = pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="prometheus not installed")


@pytest.fixture
def holder() -> StatusHolder:
    return StatusHolder(realistic_status())


@pytest.fixture
def prometheus(holder: StatusHolder, tmp_path: Path) -> Iterator[Prometheus]:
    recorder = ProbeRecorder()
    recorder.observe("paper", 0.0004, ok=True)
    server = MetricsServer(build_registry(holder.get, recorder), ListenAddress("127.0.0.1", 0))
    with server, Prometheus([str(server.address)], tmp_path / "prom") as prom:
        prom.wait_for("up", lambda r: value(r) == 1.0)
        yield prom


def grafana_to_promql(expr: str) -> str:
    """Grafana template variables replaced the way an 'All' selection expands them."""
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads((KIT / "grafana-dashboard.json").read_text())
    exprs = [
        (f"{p['title']} {t['refId']}", grafana_to_promql(t["expr"]))
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            selector = re.fullmatch(r"label_values\((.*),\s*\w+\)", v["definition"])
            assert selector, v["definition"]
            exprs.append((f"variable {v['name']}", grafana_to_promql(selector.group(1))))
    return exprs


def test_prometheus_sees_api_up_flip_and_restart_counter_grow(
    holder: StatusHolder, prometheus: Prometheus
) -> None:
    paper_up = 'ibgwd_api_up{job="ibgwd", mode="paper"}'
    prometheus.wait_for(paper_up, lambda r: value(r) == 1.0)
    assert prometheus.query('ibgwd_info{trading_mode="both"}')[0]["metric"]["gateway_version"]

    holder.current = realistic_status(api_up=False)  # an injected API zombie
    prometheus.wait_for(paper_up, lambda r: value(r) == 0.0)

    holder.current = realistic_status(api_up=True, restarts=1)  # recovered by a unit restart
    prometheus.wait_for(paper_up, lambda r: value(r) == 1.0)
    restarts = 'ibgwd_component_restarts_total{component="ibc-live"}'
    prometheus.wait_for(restarts, lambda r: value(r) == 1.0)
    assert prometheus.targets_health() == ["up"]


def test_every_dashboard_query_returns_data_from_a_real_scrape(prometheus: Prometheus) -> None:
    # rate() and increase() need two samples of every series
    prometheus.wait_for("count_over_time(ibgwd_ready[1m])", lambda r: (value(r) or 0) >= 2)
    empty: list[str] = []
    for where, expr in dashboard_exprs():
        result: Result = prometheus.query(expr)
        if not result:
            empty.append(f"{where}: {expr}")
    assert empty == []


def test_every_alert_expression_is_valid_promql(prometheus: Prometheus) -> None:
    yaml = pytest.importorskip("yaml")
    rules = yaml.safe_load((KIT / "alerts.yml").read_text())
    exprs = {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}
    for expr in exprs.values():
        prometheus.query(expr)  # raises PrometheusError on a parse error
    healthy = {name: prometheus.query(expr) for name, expr in exprs.items()}
    assert healthy == {name: [] for name in exprs}, "a healthy instance matches no alert"
