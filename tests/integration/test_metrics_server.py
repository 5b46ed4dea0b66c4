"""MetricsServer over real HTTP: promtool-clean scrapes on IPv4 and IPv6, clean stop, busy ports,
and scrapes that never wait for (or tear) the supervisor's snapshot."""

from __future__ import annotations

import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from metrics_samples import StatusHolder, realistic_status
from prometheus_client.parser import text_string_to_metric_families

from ibgwd.errors import ConfigError
from ibgwd.metrics import ListenAddress, MetricsServer, ProbeRecorder, build_registry


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def holder() -> StatusHolder:
    return StatusHolder(realistic_status())


@pytest.fixture
def server(holder: StatusHolder) -> Iterator[MetricsServer]:
    recorder = ProbeRecorder()
    for seconds in (0.0003, 0.0004, 0.002):
        recorder.observe("paper", seconds, ok=True)
    with MetricsServer(build_registry(holder.get, recorder), ListenAddress("127.0.0.1", 0)) as srv:
        yield srv


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        pytest.param(
            "::1",
            marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1)"),
        ),
    ],
)
def test_promtool_check_metrics_accepts_a_real_scrape(holder: StatusHolder, host: str) -> None:
    with MetricsServer(build_registry(holder.get), ListenAddress(host, 0)) as srv:
        assert srv.address.host == host and srv.address.port > 0
        body = scrape(srv.url)
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body.encode(), capture_output=True, timeout=30
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert 'ibgwd_api_up{mode="paper"} 1.0' in body
    assert 'ibgateway_process_resident_memory_bytes{mode="live"}' in body


def test_a_scrape_shows_the_snapshot_published_last(
    holder: StatusHolder, server: MetricsServer
) -> None:
    paper = ("ibgwd_api_up", (("mode", "paper"),))
    assert samples(scrape(server.url))[paper] == 1.0
    holder.current = realistic_status(api_up=False)
    assert samples(scrape(server.url))[paper] == 0.0


def test_probe_histogram_is_served(server: MetricsServer) -> None:
    values = samples(scrape(server.url))
    key = ("ibgwd_api_probe_duration_seconds_bucket", (("le", "0.0005"), ("mode", "paper")))
    assert values[key] == 2.0
    assert values[("ibgwd_api_probe_duration_seconds_count", (("mode", "paper"),))] == 3.0


def test_stop_ends_the_thread_releases_the_port_and_is_idempotent(holder: StatusHolder) -> None:
    registry = build_registry(holder.get)
    first = MetricsServer(registry, ListenAddress("127.0.0.1", 0))
    first.start()
    address = first.address
    scrape(first.url)  # leaves a closed connection behind (TIME_WAIT) like a real scrape
    first.stop()
    first.stop()
    assert not [t for t in threading.enumerate() if t.name == "ibgwd-metrics"]
    with pytest.raises(OSError):
        socket.create_connection((address.host, address.port), timeout=2).close()
    with MetricsServer(registry, address) as second:  # ibgwd restarted on the same address
        assert second.address == address
        scrape(second.url)


def test_a_busy_port_is_a_config_error_naming_metrics_address(holder: StatusHolder) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        srv = MetricsServer(build_registry(holder.get), ListenAddress("127.0.0.1", port))
        with pytest.raises(ConfigError, match=rf"METRICS_ADDRESS: .*127\.0\.0\.1:{port}.*in use"):
            srv.start()


def test_from_setting_disabled_when_empty(holder: StatusHolder) -> None:
    assert MetricsServer.from_setting(build_registry(holder.get), "") is None
    srv = MetricsServer.from_setting(build_registry(holder.get), "[::1]:9108")
    assert srv is not None and srv.address == ListenAddress("::1", 9108)


def test_concurrent_scrapes_each_see_one_whole_snapshot_while_snapshots_are_swapped(
    holder: StatusHolder, server: MetricsServer
) -> None:
    """Snapshot n has every counter equal to n: a torn read would mix two values."""
    done = threading.Event()
    published = [0]

    def supervisor() -> None:
        n = 1
        while not done.is_set():
            n += 1
            holder.current = realistic_status(serial=n)  # one reference swap, no lock
            published[0] = n

    seen: list[tuple[float, float, float]] = []
    errors: list[BaseException] = []

    def scraper() -> None:
        try:
            for _ in range(20):
                values = samples(scrape(server.url))
                seen.append(
                    (
                        values[("ibgwd_reloads_total", ())],
                        values[("ibgwd_api_probes_total", (("mode", "live"),))],
                        values[("ibgwd_api_probes_total", (("mode", "paper"),))],
                    )
                )
        except BaseException as exc:
            errors.append(exc)

    swapper = threading.Thread(target=supervisor)
    scrapers = [threading.Thread(target=scraper) for _ in range(4)]
    swapper.start()
    for t in scrapers:
        t.start()
    for t in scrapers:
        t.join(60)
    done.set()
    swapper.join(10)
    assert errors == []
    assert len(seen) == 80
    torn = [s for s in seen if len(set(s)) != 1]
    assert torn == []
    assert len({s[0] for s in seen}) > 1, "the supervisor never swapped during the scrapes"
    assert published[0] > 1


def test_a_scrape_completes_while_the_supervisor_holds_its_own_lock(
    holder: StatusHolder, server: MetricsServer
) -> None:
    """The collector reads the published reference; it never waits for the supervisor."""
    supervisor_lock = threading.Lock()
    with supervisor_lock:  # the supervisor is busy in a long step
        holder.current = realistic_status(serial=42)
        values = samples(scrape(server.url))
    assert values[("ibgwd_reloads_total", ())] == 42
