"""Acceptance of the Prometheus metrics (issue 7): a real Prometheus scrapes the real ibgwd.

Each test boots its own box with ibgwd and the simulated gateway (tests/system/stack.py).
Prometheus (Debian's /usr/bin/prometheus) runs inside the box as a transient unit, because
the box has its own network namespace and ibgwd's /metrics listens on the box's loopback;
its HTTP API is queried from inside the box too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

PROMETHEUS = "/usr/bin/prometheus"
PROM_DIR = "/tmp/prometheus"
PROM_PORT = 9090  # inside the box's own network namespace: nothing else listens there
METRICS_TARGET = "127.0.0.1:9108"
EVENTS = "/var/lib/ibgwd/default/settings/sim-events.log"
DEST = ("org.ibgwd.Gateway1.default", "/org/ibgwd/Gateway1", "org.ibgwd.Gateway1.Manager")
RELAY_UNIT = "ibgwd-default-relay-paper.service"
API_UP = 'ibgwd_api_up{mode="paper"}'
WAIT_S = 120.0

Result = list[dict[str, Any]]

QUERY = """
import json, sys, urllib.parse, urllib.request
query = urllib.parse.urlencode({"query": sys.argv[2]})
url = f"http://127.0.0.1:{sys.argv[1]}/api/v1/query?{query}"
try:
    body = urllib.request.urlopen(url, timeout=10).read().decode()
except Exception as e:
    body = json.dumps({"status": "error", "error": type(e).__name__ + ": " + str(e)})
print(body)
"""


class BoxPrometheus:
    """A Prometheus server in the box scraping ibgwd every second; stopped with the box."""

    def __init__(self, box: Box) -> None:
        self.box = box

    def start(self) -> None:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {"job_name": "ibgwd", "static_configs": [{"targets": [METRICS_TARGET]}]}
            ],
        }
        conf = self.box.path(f"{PROM_DIR}/prometheus.yml")
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
        self.box.run(
            "systemd-run",
            "--unit=test-prometheus",
            "--quiet",
            PROMETHEUS,
            f"--config.file={PROM_DIR}/prometheus.yml",
            f"--storage.tsdb.path={PROM_DIR}/data",
            f"--web.listen-address=127.0.0.1:{PROM_PORT}",
            "--log.level=warn",
        )
        self.wait_for("up", lambda r: value(r) == 1.0, 60)

    def query(self, expr: str) -> Result:
        r = self.box.run("/usr/bin/python3", "-c", QUERY, str(PROM_PORT), expr, check=False)
        try:
            body = json.loads(r.stdout)
        except json.JSONDecodeError:
            body = {"status": "error", "error": r.stdout + r.stderr}
        if body.get("status") != "success":
            return []  # not up yet, or no answer: the callers wait
        return list(body["data"]["result"])

    def wait_for(
        self, expr: str, predicate: Callable[[Result], bool], timeout_s: float = WAIT_S
    ) -> float:
        """Query until predicate(result) holds; returns the seconds it took."""
        t0 = time.monotonic()
        last: list[Result] = [[]]

        def check() -> bool:
            last[0] = self.query(expr)
            return predicate(last[0])

        try:
            stack.wait_for(check, timeout_s, f"Prometheus: {expr}", interval=0.3)
        except AssertionError as e:
            log = self.box.run(
                "journalctl", "-u", "test-prometheus", "--no-pager", "-n", "20", check=False
            ).stdout
            raise AssertionError(f"{e}; last result {last[0]}\n{log}") from None
        return time.monotonic() - t0


def value(result: Result) -> float | None:
    """The value of a single-series instant-query result, None if there is no series."""
    if len(result) != 1:
        return None
    return float(result[0]["value"][1])


def boot(box: Box, **overrides: str) -> None:
    stack.install(box, stack.base_settings() | overrides)
    stack.start(box)


def events(box: Box) -> list[str]:
    try:
        return box.path(EVENTS).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def test_promtool_check_metrics_is_clean_on_a_real_scrape(box: Box) -> None:
    boot(box, VNC_SERVER_PASSWORD="vnc-Metrics-pw")
    stack.wait_for(
        lambda: 'ibgwd_component_up{component="relay-paper"} 1.0' in stack.metrics(box),
        30,
        "the relay in the metrics",
    )
    text = stack.metrics(box)
    r = box.run("promtool", "check", "metrics", input=text, check=False)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    for line in (
        f"{API_UP} 1.0",
        "ibgwd_ready 1.0",
        'ibgwd_state{state="ready"} 1.0',
        'ibgwd_component_up{component="vnc"} 1.0',
    ):
        assert line in text, line
    for name in ("ibgwd_info{", "ibgwd_api_probe_duration_seconds_bucket{", "ibgwd_recoveries"):
        assert name in text, name
    assert "vnc-Metrics-pw" not in text and stack.DEMO_PASSWORD not in text


def test_prometheus_sees_the_restart_counter_of_a_killed_relay_increase(box: Box) -> None:
    boot(box)
    prom = BoxPrometheus(box)
    prom.start()
    restarts = 'ibgwd_component_restarts_total{component="relay-paper"}'
    prom.wait_for(restarts, lambda r: value(r) == 0.0)
    prom.wait_for('ibgwd_component_up{component="relay-paper"}', lambda r: value(r) == 1.0)

    relay_pid = stack.show(box, RELAY_UNIT, "MainPID")
    assert int(relay_pid) > 0
    box.run("kill", "-KILL", relay_pid)
    took = prom.wait_for(restarts, lambda r: (value(r) or 0.0) >= 1.0)
    print(f"recovery: relay killed -> restart counted in Prometheus after {took:.1f} s")
    prom.wait_for('ibgwd_component_up{component="relay-paper"}', lambda r: value(r) == 1.0)
    assert stack.show(box, RELAY_UNIT, "MainPID") not in ("0", relay_pid)
    assert stack.ib_async_client(box, 4004, client_id=41).ok  # the relay serves again


def test_prometheus_sees_api_up_flip_to_zero_during_an_api_zombie_and_back(box: Box) -> None:
    # LOGIN_TIMEOUT bounds how long ibgwd waits for a gateway that never answers (min. 10 s).
    boot(box, LOGIN_TIMEOUT="15")
    prom = BoxPrometheus(box)
    prom.start()
    prom.wait_for(API_UP, lambda r: value(r) == 1.0)
    recoveries = 'sum(ibgwd_recoveries_total{mode="paper"})'
    prom.wait_for(recoveries, lambda r: value(r) == 0.0)

    # Inject: the next gateway start opens the API port but never answers the handshake.
    stack.write_sim_conf(box, {"Scenario": "api_zombie"})
    before = len(events(box))
    t0 = time.monotonic()
    box.run("busctl", "call", *DEST, "Restart", "sb", "paper", "true")
    stack.wait_for(
        lambda: (
            any(
                "event=starting" in ln and "scenario=api_zombie" in ln
                for ln in events(box)[before:]
            )
            and any(" event=api_open" in ln for ln in events(box)[before:])
        ),
        WAIT_S,
        "the zombie gateway to open its API port",
    )
    zombie_at = len(events(box))
    failures = 'ibgwd_api_probe_failures_total{mode="paper"}'
    failed_before = value(prom.query(failures)) or 0.0
    prom.wait_for(failures, lambda r: (value(r) or 0.0) > failed_before)  # probes hit the zombie
    prom.wait_for(API_UP, lambda r: value(r) == 0.0)
    print(f"recovery: Restart hard -> api_up 0 in Prometheus after {time.monotonic() - t0:.1f} s")
    assert " event=api_client_connected " not in "\n".join(events(box)[zombie_at:])
    assert value(prom.query(API_UP)) == 0.0, "api_up came back while the zombie was running"

    # Heal: the escalation's restart starts a gateway that answers again.
    stack.write_sim_conf(box, {"Scenario": "ok"})
    up = prom.wait_for(API_UP, lambda r: value(r) == 1.0, timeout_s=WAIT_S)
    print(f"recovery: scenario ok -> api_up 1 in Prometheus after {up:.1f} s")
    prom.wait_for(recoveries, lambda r: (value(r) or 0.0) >= 1.0)
    prom.wait_for(f"min_over_time({API_UP}[10m])", lambda r: value(r) == 0.0)
    prom.wait_for(f"changes({API_UP}[10m])", lambda r: (value(r) or 0.0) >= 2.0)
    prom.wait_for('ibgwd_state{state="ready"}', lambda r: value(r) == 1.0)
    kinds = prom.query('ibgwd_recoveries_total{mode="paper"} > 0')
    print("recoveries:", {s["metric"]["kind"]: s["value"][1] for s in kinds})


def test_restart_counter_of_the_relay_never_decreases_across_a_gateway_restart(box: Box) -> None:
    boot(box)
    restarts = 'ibgwd_component_restarts_total{component="relay-paper"}'
    relay_pid = stack.show(box, RELAY_UNIT, "MainPID")
    box.run("kill", "-KILL", relay_pid)
    stack.wait_for(lambda: f"{restarts} 1.0" in stack.metrics(box), 30, "the relay restart")
    before = len(events(box))
    box.run("busctl", "call", *DEST, "Restart", "sb", "paper", "false")
    stack.wait_for(
        lambda: (
            any(" event=api_open" in ln for ln in events(box)[before:])
            and stack.show(box, RELAY_UNIT, "ActiveState") == "active"
            and "ibgwd_ready 1.0" in stack.metrics(box)
        ),
        WAIT_S,
        "the gateway and its relay back after Restart soft",
    )
    time.sleep(3)  # one more unit poll (2 s), so the metric reflects the new relay unit
    assert f"{restarts} 0.0" not in stack.metrics(box)
