"""Measure GET /metrics latency of MetricsServer serving a realistic two-gateway snapshot.

Usage: .venv/bin/python bench/metrics_scrape.py [SCRAPES]   (default 200; prints p50/p90/p99)
"""

from __future__ import annotations

import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from metrics_samples import StatusHolder, realistic_status

from ibgwd.metrics import ListenAddress, MetricsServer, ProbeRecorder, build_registry


def main() -> None:
    scrapes = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    holder = StatusHolder(realistic_status())
    recorder = ProbeRecorder()
    for i in range(100):
        recorder.observe("live" if i % 2 else "paper", 0.0002 + i * 1e-5, ok=True)
    server = MetricsServer(build_registry(holder.get, recorder), ListenAddress("127.0.0.1", 0))
    with server:
        for _ in range(20):  # warm-up
            urllib.request.urlopen(server.url, timeout=10).read()
        durations = []
        size = 0
        for _ in range(scrapes):
            start = time.perf_counter()
            with urllib.request.urlopen(server.url, timeout=10) as response:
                size = len(response.read())
            durations.append(time.perf_counter() - start)
    q = statistics.quantiles(durations, n=100)
    print(
        f"scrapes={scrapes} bytes={size} p50_ms={statistics.median(durations) * 1e3:.2f} "
        f"p90_ms={q[89] * 1e3:.2f} p99_ms={q[98] * 1e3:.2f} max_ms={max(durations) * 1e3:.2f}"
    )


if __name__ == "__main__":
    main()
