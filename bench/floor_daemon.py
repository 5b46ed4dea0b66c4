"""The footprint baseline, run INSIDE a benchmark box next to ibgwd: the least a daemon with
ibgwd's libraries and duties can cost (Debian's /usr/bin/python3).

    floor_daemon.py METRICS_PORT API_PORT PROBE_INTERVAL_S

Type=notify with the watchdog: imports dasbus (GLib), sdnotify, jinja2 and prometheus_client,
renders a template, serves about 50 metric families with prometheus_client's own server, and
every PROBE_INTERVAL_S connects to the API port, closes, and pings the watchdog. No unit
management, no journal reading, no D-Bus API: what ibgwd costs beyond this is its own.
"""

from __future__ import annotations

import socket
import sys

import jinja2
import sdnotify
from dasbus.connection import SystemMessageBus  # noqa: F401 (GLib and Gio, as ibgwd loads them)
from gi.repository import GLib
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


def metrics(registry: CollectorRegistry) -> None:
    for i in range(30):
        Gauge(f"floor_gauge_{i}", "a gauge", registry=registry).set(i)
    for i in range(10):
        Counter(f"floor_counter_{i}", "a counter", registry=registry).inc(i)
    for i in range(5):
        Histogram(f"floor_histogram_{i}", "a histogram", registry=registry).observe(0.001 * i)
    for i in range(5):
        g = Gauge(f"floor_labelled_{i}", "a labelled gauge", ["mode"], registry=registry)
        for mode in ("a", "b", "c", "d"):
            g.labels(mode).set(i)


def main(argv: list[str]) -> None:
    metrics_port, api_port, interval = int(argv[0]), int(argv[1]), float(argv[2])
    jinja2.Template("IbLoginId={{ user }}\nOverrideTwsApiPort={{ port }}\n").render(
        user="u", port=api_port
    )
    registry = CollectorRegistry()
    metrics(registry)
    start_http_server(metrics_port, addr="127.0.0.1", registry=registry)
    notifier = sdnotify.SystemdNotifier()

    def probe() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", api_port), timeout=1):
                pass
        except OSError:
            pass
        notifier.notify("WATCHDOG=1")
        return True

    GLib.timeout_add(int(interval * 1000), probe)
    GLib.idle_add(lambda: notifier.notify("READY=1") and False)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main(sys.argv[1:])
