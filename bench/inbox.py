"""Helpers that run INSIDE a benchmark box (Debian's /usr/bin/python3): one JSON line each.

poll PORT READYFILE [--after-failure]   ib_async client retrying until reqCurrentTime works
mem UNIT...                             RSS/PSS summed over each unit's cgroup processes
idle PID SECONDS                        CPU and voluntary wake-ups of PID (all threads)
idleunits SECONDS UNIT...               the same summed over every process of each unit's cgroup
outage PORT READYFILE STOPFILE          ib_async connect + reqCurrentTime every 50 ms until
                                        STOPFILE exists: the windows during which it failed
scrape URL N                            GET /metrics N times, latency percentiles
scrapeloop URL HZ                       GET /metrics at HZ until killed
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path


def poll(port: int, readyfile: str, after_failure: bool) -> dict[str, object]:
    """Until a reqCurrentTime succeeds (after a failure first, if asked): its epoch time."""
    import logging

    from ib_async import IB

    logging.disable(logging.CRITICAL)
    Path(readyfile).write_text("armed")
    failed = not after_failure
    attempts = 0
    deadline = time.time() + 600
    while time.time() < deadline:
        attempts += 1
        ib = IB()
        try:
            ib.connect("127.0.0.1", port, clientId=40 + attempts % 50, timeout=2)
            ib.reqCurrentTime()
            done = time.time()
            ib.disconnect()
            if failed:
                return {"ok": True, "t": done, "attempts": attempts}
            time.sleep(0.02)
        except Exception:  # any failure: refused, timeout, handshake cut by a restart
            failed = True
            ib.disconnect()
            time.sleep(0.02)
    return {"ok": False, "attempts": attempts}


def _cgroup_pids(unit: str) -> list[int]:
    import subprocess

    cg = subprocess.run(
        ["systemctl", "show", "-P", "ControlGroup", unit], capture_output=True, text=True
    ).stdout.strip()
    pids: list[int] = []
    if cg:
        for procs in Path("/sys/fs/cgroup" + cg).rglob("cgroup.procs"):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def _rollup(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out


def mem(units: list[str]) -> dict[str, object]:
    result: dict[str, object] = {}
    for unit in units:
        pids = _cgroup_pids(unit)
        rolls = [_rollup(p) for p in pids]
        result[unit] = {
            "pids": len(pids),
            "rss_kib": sum(r.get("Rss", 0) for r in rolls),
            "pss_kib": sum(r.get("Pss", 0) for r in rolls),
        }
    return result


def _wakeups(pid: int) -> tuple[int, int]:
    vol = invol = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    invol += int(line.split()[1])
        except OSError:
            continue
    return vol, invol


def _cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue
    return total


def idle(pid: int, seconds: float) -> dict[str, object]:
    main_before = _main_vol(pid)
    vol0, inv0, cpu0, t0 = *_wakeups(pid), _cpu_ns(pid), time.monotonic()
    time.sleep(seconds)
    vol1, inv1, cpu1, t1 = *_wakeups(pid), _cpu_ns(pid), time.monotonic()
    span = t1 - t0
    roll = _rollup(pid)
    return {
        "seconds": span,
        "cpu_ms": (cpu1 - cpu0) / 1e6,
        "cpu_percent": (cpu1 - cpu0) / 1e9 / span * 100,
        "wakeups_per_s": (vol1 - vol0) / span,
        "main_thread_wakeups_per_s": (_main_vol(pid) - main_before) / span,
        "involuntary_per_s": (inv1 - inv0) / span,
        "threads": len(list(Path(f"/proc/{pid}/task").iterdir())),
        "rss_kib": roll.get("Rss"),
        "pss_kib": roll.get("Pss"),
    }


def _main_vol(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            return int(line.split()[1])
    return 0


def _unit_sample(unit: str) -> dict[str, float]:
    pids = _cgroup_pids(unit)
    cpu = vol = inv = threads = 0
    for pid in pids:
        try:
            cpu += _cpu_ns(pid)
            v, i = _wakeups(pid)
            vol, inv = vol + v, inv + i
            threads += len(list(Path(f"/proc/{pid}/task").iterdir()))
        except OSError:
            continue
    return {"cpu_ns": cpu, "vol": vol, "inv": inv, "threads": threads, "processes": len(pids)}


def _unit_cpu_ns(unit: str) -> int:
    import subprocess

    out = subprocess.run(
        ["systemctl", "show", "-P", "CPUUsageNSec", unit], capture_output=True, text=True
    ).stdout.strip()
    return int(out) if out.isdigit() else 0


def idleunits(seconds: float, units: list[str]) -> dict[str, object]:
    """Side by side over the same window: CPU from the cgroup (every process, also those that
    came and went) and from schedstat, wake-ups, threads, processes, RSS and PSS summed."""
    before = {u: (_unit_sample(u), _unit_cpu_ns(u)) for u in units}
    t0 = time.monotonic()
    time.sleep(seconds)
    span = time.monotonic() - t0
    out: dict[str, object] = {}
    memory = mem(units)
    for u in units:
        (b, bcg), a, acg = before[u], _unit_sample(u), _unit_cpu_ns(u)
        m = memory[u]
        assert isinstance(m, dict)
        out[u] = {
            "seconds": span,
            "cgroup_cpu_percent": (acg - bcg) / 1e9 / span * 100,
            "cpu_percent": (a["cpu_ns"] - b["cpu_ns"]) / 1e9 / span * 100,
            "wakeups_per_s": (a["vol"] - b["vol"]) / span,
            "involuntary_per_s": (a["inv"] - b["inv"]) / span,
            "threads": a["threads"],
            "processes": a["processes"],
            "rss_kib": m["rss_kib"],
            "pss_kib": m["pss_kib"],
        }
    return out


def outage(port: int, readyfile: str, stopfile: str) -> dict[str, object]:
    """A real client trying every 50 ms. A window runs from the start of the first failed
    attempt to the end of the first attempt that worked again (the client got data)."""
    import logging

    from ib_async import IB

    logging.disable(logging.CRITICAL)
    Path(readyfile).write_text("armed")
    windows: list[list[float]] = []
    failing_since: float | None = None
    attempts = failures = 0
    while not Path(stopfile).exists():
        attempts += 1
        start = time.time()
        ib = IB()
        try:
            ib.connect("127.0.0.1", port, clientId=60 + attempts % 30, timeout=2)
            ib.reqCurrentTime()
            ok = True
        except Exception:  # refused, timeout, cut by a restart
            ok = False
        ib.disconnect()
        end = time.time()
        if not ok:
            failures += 1
            if failing_since is None:
                failing_since = start
        elif failing_since is not None:
            windows.append([failing_since, end])
            failing_since = None
        time.sleep(0.05)
    if failing_since is not None:
        windows.append([failing_since, time.time()])
    return {
        "outage_s": sum(b - a for a, b in windows),
        "windows": windows,
        "attempts": attempts,
        "failures": failures,
        "recovered": failing_since is None,
    }


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return len(response.read())


def scrape(url: str, n: int) -> dict[str, object]:
    for _ in range(5):
        _get(url)
    durations = []
    size = 0
    for _ in range(n):
        start = time.perf_counter()
        size = _get(url)
        durations.append((time.perf_counter() - start) * 1e3)
    ordered = sorted(durations)
    return {
        "n": n,
        "bytes": size,
        "p50_ms": statistics.median(durations),
        "p90_ms": ordered[max(0, int(0.9 * n) - 1)],
        "max_ms": ordered[-1],
    }


def scrapeloop(url: str, hz: float) -> None:
    period = 1 / hz
    next_at = time.monotonic()
    while True:
        _get(url)
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "poll":
        out: object = poll(int(args[0]), args[1], "--after-failure" in args)
    elif cmd == "mem":
        out = mem(args)
    elif cmd == "idle":
        out = idle(int(args[0]), float(args[1]))
    elif cmd == "idleunits":
        out = idleunits(float(args[0]), args[1:])
    elif cmd == "outage":
        out = outage(int(args[0]), args[1], args[2])
    elif cmd == "scrape":
        out = scrape(args[0], int(args[1]))
    elif cmd == "scrapeloop":
        scrapeloop(args[0], float(args[1]))
        return
    else:
        raise SystemExit(f"unknown command {cmd!r}")
    print(json.dumps(out))
    sys.stdout.flush()
    os._exit(0)  # ib_async may leave an event loop behind


if __name__ == "__main__":
    main(sys.argv[1:])
