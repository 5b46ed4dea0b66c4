"""The metrics collector: families built from a Status snapshot, probe histogram, JVM process
metrics from a fake /proc and a real process tree, METRICS_ADDRESS parsing, and the pinned
metric-name list."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import proctree
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import Metric

from ibgwd.errors import ConfigError
from ibgwd.metrics import (
    KNOWN_RECOVERY_KINDS,
    GatewayProcessCollector,
    ListenAddress,
    ProbeRecorder,
    StatusCollector,
    build_registry,
    gateway_jvm,
    parse_metrics_address,
)
from ibgwd.status import ComponentStatus, GatewayStatus, State, Status

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "metrics.txt"
T0 = 1_790_000_000.0


def gateway(mode: str = "paper", **changes: object) -> GatewayStatus:
    base = GatewayStatus(
        mode=mode,
        state=State.READY,
        api_port=4002 if mode == "paper" else 4001,
        relay_port=4004 if mode == "paper" else 4003,
        api_up=True,
        last_probe_timestamp=T0 + 100,
        last_probe_latency_s=0.0004,
        last_success_timestamp=T0 + 100,
        probes_total=40,
        probe_failures_total=3,
        consecutive_failures=0,
        recoveries={"soft_restart": 2},
        ready_timestamp=T0 + 20,
        login_wait_s=12.5,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def component(name: str, active_state: str = "active", restarts: int = 0) -> ComponentStatus:
    return ComponentStatus(
        name=name,
        unit=f"ibgwd-default-{name}.service",
        active_state=active_state,
        sub_state="running" if active_state == "active" else "dead",
        restarts=restarts,
        main_pid=1234,
    )


def status(**changes: object) -> Status:
    base = Status(
        instance="default",
        version="0.1.0",
        trading_mode="both",
        state=State.READY,
        ready=True,
        status_text="ready: API live on 4001, 4002",
        started_timestamp=T0,
        ready_timestamp=T0 + 21.5,
        gateways=(gateway("live"), gateway("paper")),
        components=(
            component("display"),
            component("ibc-live", restarts=1),
            component("ibc-paper"),
            component("relay-live"),
            component("relay-paper", "failed", restarts=4),
        ),
        reloads_total=3,
        reload_failures_total=1,
        gateway_version="10.30",
        ibc_version="3.20.0",
        gateway_pids={},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def registry_for(snapshot: Status, recorder: ProbeRecorder | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: snapshot, recorder))
    return registry


def all_samples(registry: CollectorRegistry) -> Iterator[tuple[str, dict[str, str], float]]:
    for family in registry.collect():
        for s in family.samples:
            yield s.name, s.labels, s.value


# --- instance ------------------------------------------------------------------------------------


def test_info_metric_carries_versions_instance_name_and_trading_mode() -> None:
    r = registry_for(status())
    labels = {
        "version": "0.1.0",
        "instance_name": "default",
        "trading_mode": "both",
        "gateway_version": "10.30",
        "ibc_version": "3.20.0",
    }
    assert r.get_sample_value("ibgwd_info", labels) == 1.0


def test_no_series_carries_an_instance_label() -> None:
    r = build_registry(lambda: status(gateway_pids={"paper": proctree.launcher()}))
    offending = [name for name, labels, _ in all_samples(r) if "instance" in labels]
    assert offending == []


@pytest.mark.parametrize("current", list(State))
def test_instance_state_set_has_every_state_and_only_the_current_one_is_1(current: State) -> None:
    r = registry_for(status(state=current))
    values = {s.value: r.get_sample_value("ibgwd_state", {"state": s.value}) for s in State}
    assert values == {s.value: (1.0 if s is current else 0.0) for s in State}


def test_gateway_state_set_is_per_mode() -> None:
    snapshot = status(
        gateways=(gateway("live", state=State.WAITING_2FA), gateway("paper", state=State.READY))
    )
    r = registry_for(snapshot)
    assert r.get_sample_value("ibgwd_gateway_state", {"mode": "live", "state": "waiting_2fa"}) == 1
    assert r.get_sample_value("ibgwd_gateway_state", {"mode": "live", "state": "ready"}) == 0
    assert r.get_sample_value("ibgwd_gateway_state", {"mode": "paper", "state": "ready"}) == 1
    assert r.get_sample_value("ibgwd_gateway_state", {"mode": "paper", "state": "waiting_2fa"}) == 0


def test_ready_start_time_reloads_follow_the_snapshot() -> None:
    r = registry_for(status(ready=False, reloads_total=7, reload_failures_total=2))
    assert r.get_sample_value("ibgwd_ready") == 0.0
    assert r.get_sample_value("ibgwd_start_time_seconds") == T0
    assert r.get_sample_value("ibgwd_reloads_total") == 7
    assert r.get_sample_value("ibgwd_reload_failures_total") == 2


def test_time_to_ready_is_absent_until_ready_then_seconds_from_start() -> None:
    assert (
        registry_for(status(ready_timestamp=0.0)).get_sample_value("ibgwd_time_to_ready_seconds")
        is None
    )
    assert registry_for(status()).get_sample_value("ibgwd_time_to_ready_seconds") == 21.5


# --- gateways ------------------------------------------------------------------------------------


def test_api_up_probe_counters_and_timestamps_are_per_mode() -> None:
    snapshot = status(
        gateways=(
            gateway("live", api_up=False, probes_total=9, probe_failures_total=4,
                    consecutive_failures=2, last_success_timestamp=T0 + 5),
            gateway("paper"),
        )
    )  # fmt: skip
    r = registry_for(snapshot)
    live, paper = {"mode": "live"}, {"mode": "paper"}
    assert r.get_sample_value("ibgwd_api_up", live) == 0
    assert r.get_sample_value("ibgwd_api_up", paper) == 1
    assert r.get_sample_value("ibgwd_api_probes_total", live) == 9
    assert r.get_sample_value("ibgwd_api_probe_failures_total", live) == 4
    assert r.get_sample_value("ibgwd_api_consecutive_failures", live) == 2
    assert r.get_sample_value("ibgwd_api_last_success_timestamp_seconds", live) == T0 + 5
    assert r.get_sample_value("ibgwd_api_last_probe_timestamp_seconds", paper) == T0 + 100
    assert r.get_sample_value("ibgwd_api_last_probe_duration_seconds", paper) == 0.0004
    assert r.get_sample_value("ibgwd_login_wait_seconds", paper) == 12.5
    assert r.get_sample_value("ibgwd_gateway_ready_timestamp_seconds", paper) == T0 + 20
    info = {"mode": "live", "api_port": "4001", "relay_port": "4003"}
    assert r.get_sample_value("ibgwd_gateway_info", info) == 1


def test_known_recovery_kinds_export_0_before_they_happen_and_new_kinds_appear() -> None:
    snapshot = status(gateways=(gateway("paper", recoveries={"soft_restart": 2, "novel": 1}),))
    r = registry_for(snapshot)
    values = {
        kind: r.get_sample_value("ibgwd_recoveries_total", {"mode": "paper", "kind": kind})
        for kind in (*KNOWN_RECOVERY_KINDS, "novel")
    }
    assert values == {
        "soft_restart": 2,
        "unit_restart": 0,
        "watchdog": 0,
        "login_failed": 0,
        "novel": 1,
    }


def test_histogram_of_a_mode_without_probes_exports_zero_buckets() -> None:
    r = registry_for(status())
    assert r.get_sample_value("ibgwd_api_probe_duration_seconds_count", {"mode": "live"}) == 0
    le_inf = {"mode": "live", "le": "+Inf"}
    assert r.get_sample_value("ibgwd_api_probe_duration_seconds_bucket", le_inf) == 0


def test_probe_recorder_buckets_successful_probes_cumulatively() -> None:
    recorder = ProbeRecorder(buckets_s=(0.001, 0.01, 0.1))
    for seconds in (0.0002, 0.0009, 0.005, 0.5):
        recorder.observe("paper", seconds, ok=True)
    r = registry_for(status(), recorder)

    def bucket(le: str) -> float | None:
        return r.get_sample_value(
            "ibgwd_api_probe_duration_seconds_bucket", {"mode": "paper", "le": le}
        )

    assert [bucket(le) for le in ("0.001", "0.01", "0.1", "+Inf")] == [2, 3, 3, 4]
    assert r.get_sample_value("ibgwd_api_probe_duration_seconds_count", {"mode": "paper"}) == 4
    total = r.get_sample_value("ibgwd_api_probe_duration_seconds_sum", {"mode": "paper"})
    assert total == pytest.approx(0.5061)
    assert r.get_sample_value("ibgwd_api_probe_duration_seconds_count", {"mode": "live"}) == 0


def test_failed_probes_are_not_latency_samples() -> None:
    recorder = ProbeRecorder()
    recorder.observe("paper", 5.0, ok=False)
    recorder.observe("paper", float("nan"), ok=True)
    recorder.observe("paper", 0.001, ok=True)
    assert recorder.histogram("paper").count == 1


def test_a_scrape_reads_the_snapshot_exactly_once() -> None:
    calls: list[int] = []
    snapshot = status()

    def provider() -> Status:
        calls.append(1)
        return snapshot

    registry = CollectorRegistry()
    registry.register(StatusCollector(provider))
    list(registry.collect())
    assert len(calls) == 1


# --- components ----------------------------------------------------------------------------------


def test_component_up_state_and_restarts_follow_the_units() -> None:
    r = registry_for(status())
    relay = {"component": "relay-paper"}
    assert r.get_sample_value("ibgwd_component_up", relay) == 0
    assert r.get_sample_value("ibgwd_component_restarts_total", relay) == 4
    assert r.get_sample_value("ibgwd_component_state", {**relay, "state": "failed"}) == 1
    assert r.get_sample_value("ibgwd_component_state", {**relay, "state": "active"}) == 0
    assert r.get_sample_value("ibgwd_component_up", {"component": "display"}) == 1


def test_an_active_state_outside_the_known_set_is_still_exported() -> None:
    r = registry_for(status(components=(component("vnc", "maintenance"),)))
    labels = {"component": "vnc", "state": "maintenance"}
    assert r.get_sample_value("ibgwd_component_state", labels) == 1


# --- the Gateway JVM ------------------------------------------------------------------------------


def fake_proc(
    root: Path,
    pids: dict[int, tuple[int, int]],
    children: dict[int, list[int]] | None = None,
    comm: dict[int, str] | None = None,
) -> Path:
    """A /proc with btime and, per pid, stat (utime, rss pages), limits, two fds and children."""
    root.mkdir(exist_ok=True)
    (root / "stat").write_text("cpu  1 2 3\nbtime 1700000000\n")
    for pid, (utime_ticks, rss_pages) in pids.items():
        d = root / str(pid)
        (d / "fd").mkdir(parents=True)
        for fd in ("0", "1"):
            (d / "fd" / fd).write_text("")
        # after "(comm)": state, 10 fields, utime, stime, 6 fields, starttime, vsize, rss
        fields = ["S", *["0"] * 10, str(utime_ticks), "0", *["0"] * 6, "500", "1048576"]
        fields.append(str(rss_pages))
        name = (comm or {}).get(pid, "java")
        (d / "stat").write_text(f"{pid} ({name}) " + " ".join(fields) + " 0 0 0\n")
        (d / "limits").write_text(
            "Limit                     Soft Limit           Hard Limit           Units\n"
            "Max open files            4096                 4096                 files\n"
        )
        (d / "task" / str(pid)).mkdir(parents=True)
        kids = (children or {}).get(pid, [])
        (d / "task" / str(pid) / "children").write_text("".join(f"{k} " for k in kids))
    return root


def test_gateway_jvm_process_metrics_describe_the_launchers_java_child_labelled_by_mode(
    tmp_path: Path,
) -> None:
    # launchers 100 and 200 (IBC's script, the IBC unit's MainPID) run the JVMs 101 and 202;
    # 200 also runs a short helper, 203, and the JVM 202 a child of its own, 204
    proc = fake_proc(
        tmp_path / "proc",
        {
            100: (7, 900),
            101: (100, 10),
            200: (7, 900),
            202: (300, 20),
            203: (1, 1),
            204: (1, 2),
        },
        children={100: [101], 200: [203, 202], 202: [204]},
        comm={100: "ibcstart.sh", 200: "ibcstart.sh", 203: "sleep", 204: "java-helper"},
    )
    registry = CollectorRegistry()
    registry.register(GatewayProcessCollector(lambda: {"live": 100, "paper": 200}, str(proc)))
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    get = registry.get_sample_value
    assert get("ibgateway_process_cpu_seconds_total", {"mode": "live"}) == 100 / ticks
    assert get("ibgateway_process_cpu_seconds_total", {"mode": "paper"}) == 300 / ticks
    assert get("ibgateway_process_resident_memory_bytes", {"mode": "paper"}) == 20 * page
    assert get("ibgateway_process_open_fds", {"mode": "live"}) == 2
    assert get("ibgateway_process_max_fds", {"mode": "live"}) == 4096
    start = get("ibgateway_process_start_time_seconds", {"mode": "live"})
    assert start == 1700000000 + 500 / ticks


def test_without_a_child_named_java_the_largest_descendant_is_the_jvm(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path / "proc",
        {1: (0, 900), 2: (0, 5), 3: (0, 70000)},
        children={1: [2, 3]},
        comm={1: "ibcstart.sh", 2: "sleep", 3: "python3"},
    )
    assert gateway_jvm(1, str(proc)) == 3


@pytest.mark.parametrize(
    "pids",
    [{}, {"paper": 0}, {"paper": 999_999}, {"paper": 300}],
    ids=["no-pid", "pid-0", "vanished", "launcher-without-jvm"],
)
def test_no_running_gateway_yields_no_process_series_and_no_error(
    tmp_path: Path, pids: dict[str, int]
) -> None:
    proc = fake_proc(tmp_path / "proc", {300: (5, 900)}, comm={300: "ibcstart.sh"})
    registry = CollectorRegistry()
    registry.register(GatewayProcessCollector(lambda: pids, str(proc)))
    assert list(all_samples(registry)) == []


def test_process_metrics_follow_a_real_process_tree_to_the_child() -> None:
    """A real launcher (sh) with a real child: the series are the child's, not the launcher's,
    and follow a new child when the launcher relaunches it (as IBC relaunches Java)."""
    tree = proctree.Tree("exec sleep 3600")
    try:
        assert gateway_jvm(tree.launcher) == tree.child
        registry = CollectorRegistry()
        registry.register(GatewayProcessCollector(lambda: {"paper": tree.launcher}))
        ours = ProcessCollector(pid=lambda: tree.child, registry=None).collect()
        theirs = ProcessCollector(pid=lambda: tree.launcher, registry=None).collect()

        def value(families: Iterable[Metric], name: str) -> float:
            return next(s.value for f in families for s in f.samples if s.name == name)

        name = "process_virtual_memory_bytes"
        got = registry.get_sample_value(f"ibgateway_{name}", {"mode": "paper"})
        assert got == value(ours, name)
        assert got != value(theirs, name)  # sleep and sh differ in size
        os.kill(tree.child, 9)
        deadline = time.monotonic() + 10
        while gateway_jvm(tree.launcher) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gateway_jvm(tree.launcher) is None
        assert registry.get_sample_value(f"ibgateway_{name}", {"mode": "paper"}) is None
    finally:
        tree.close()


def test_build_registry_uses_its_own_registry_and_includes_ibgwds_process() -> None:
    r = build_registry(lambda: status(gateway_pids={"paper": proctree.launcher()}))
    assert r is not REGISTRY
    assert REGISTRY.get_sample_value("ibgwd_ready") is None
    assert (r.get_sample_value("process_resident_memory_bytes") or 0) > 0
    assert (r.get_sample_value("ibgateway_process_open_fds", {"mode": "paper"}) or 0) > 0


# --- METRICS_ADDRESS ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", None),
        ("  ", None),
        ("127.0.0.1:9108", ListenAddress("127.0.0.1", 9108)),
        ("0.0.0.0:1", ListenAddress("0.0.0.0", 1)),
        ("[::1]:9108", ListenAddress("::1", 9108)),
        ("[::]:65535", ListenAddress("::", 65535)),
        ("[fe80:0::1]:80", ListenAddress("fe80::1", 80)),
    ],
)
def test_metrics_address_accepts_ip_literals_with_a_port(
    value: str, expected: ListenAddress | None
) -> None:
    assert parse_metrics_address(value) == expected


@pytest.mark.parametrize(
    "value",
    ["9108", ":9108", "localhost:9108", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
     "127.0.0.1:x", "::1:9108", "[127.0.0.1]:9108", "[::1]9108", "[::1]:", "1.2.3:80"],
)  # fmt: skip
def test_metrics_address_rejects_bad_values_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_metrics_address(value)
    message = str(info.value)
    assert message.startswith("METRICS_ADDRESS: invalid value")
    assert repr(value) in message
    assert "[::1]:9108" in message  # says what is accepted


def test_listen_address_prints_ipv6_in_brackets() -> None:
    assert str(ListenAddress("::1", 9108)) == "[::1]:9108"
    assert str(ListenAddress("127.0.0.1", 9108)) == "127.0.0.1:9108"


# --- the pinned metric set ----------------------------------------------------------------------


def exported_families() -> list[str]:
    r = build_registry(lambda: status(gateway_pids={"paper": proctree.launcher()}))
    lines = set()
    for family in r.collect():
        kind = {"info": "gauge", "stateset": "gauge"}.get(family.type, family.type)
        name = family.name + ("_total" if kind == "counter" else "")
        name += "_info" if family.type == "info" else ""
        lines.add(f"{name} {kind}")
    return sorted(lines)


def test_exported_metric_names_and_types_match_the_golden_list() -> None:
    """A rename breaks users' dashboards and alerts: change tests/golden/metrics.txt on purpose.

    Regenerate with: IBGWD_UPDATE_GOLDEN=1 pytest tests/unit/test_metrics_collector.py
    """
    actual = exported_families()
    if os.environ.get("IBGWD_UPDATE_GOLDEN"):
        header = "# Exported metric families and types, pinned by test_metrics_collector.py\n"
        GOLDEN.write_text(header + "".join(f"{line}\n" for line in actual))
    expected = [line for line in GOLDEN.read_text().splitlines() if line and line[0] != "#"]
    assert actual == expected
