"""Render benchmark results (the JSON run.py writes) as markdown tables and docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

GOALS = {
    "stalls": "0 of 1500 in each direction",
    "conc": ">= plain socat",
    "overhead": "<= 1 s",
    "rss": "<= 40 MB",
    "cpu": "<= 0.1 %",
    "wakeups": "<= 3 /s",
    "scrape": "<= 5 ms p50",
}


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        if value.get("median") is None:
            return "-"
        if value["min"] == value["max"]:
            return _f(value["median"], digits)
        return (
            f"{_f(value['median'], digits)} ({_f(value['min'], digits)}–{_f(value['max'], digits)})"
        )
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def relay_tables(relay: dict[str, Any]) -> str:
    s = relay["summary"]
    d, p, g = s["direct"], s["plain_socat"], s["ibgwd_relay"]
    rv_d, rv_p = s["ratios"]["ibgwd_vs_direct"], s["ratios"]["ibgwd_vs_plain_socat"]
    rows = [
        [
            "64 B ping-pong p50 µs",
            _f(d["p50_us"]),
            _f(p["p50_us"]),
            _f(g["p50_us"]),
            _x(rv_d["p50"]),
            _x(rv_p["p50"]),
            "relay adds ≤ 30 µs",
        ],
        [
            "64 B ping-pong p99 µs",
            _f(d["p99_us"]),
            _f(p["p99_us"]),
            _f(g["p99_us"]),
            _x(rv_d["p99"]),
            _x(rv_p["p99"]),
            "relay adds ≤ 100 µs",
        ],
        [
            f"stalls > 10 ms, client→gateway split (of {g['split_samples']})",
            str(d["stalls_client_split"]),
            str(p["stalls_client_split"]),
            str(g["stalls_client_split"]),
            "",
            "",
            GOALS["stalls"],
        ],
        [
            f"stalls > 10 ms, gateway→client split (of {g['split_samples']})",
            str(d["stalls_gateway_split"]),
            str(p["stalls_gateway_split"]),
            str(g["stalls_gateway_split"]),
            "",
            "",
            GOALS["stalls"],
        ],
        [
            "split-message p99 µs, client→gateway",
            _f(d["split_p99_us"]),
            _f(p["split_p99_us"]),
            _f(g["split_p99_us"]),
            "",
            "",
            "",
        ],
        [
            "split-message p99 µs, gateway→client",
            _f(d["rsplit_p99_us"]),
            _f(p["rsplit_p99_us"]),
            _f(g["rsplit_p99_us"]),
            "",
            "",
            "",
        ],
        [
            f"{relay['params']['conns']} connections, round trips/s",
            _f(d["conc_rt_per_s"], 0),
            _f(p["conc_rt_per_s"], 0),
            _f(g["conc_rt_per_s"], 0),
            _x(rv_d["conc"]),
            _x(rv_p["conc"]),
            GOALS["conc"],
        ],
        [
            "relay CPU ms per 10k round trips",
            "-",
            _f(p["relay_cpu_ms_per_10k"], 0),
            _f(g["relay_cpu_ms_per_10k"], 0),
            "",
            _x(rv_p.get("cpu")),
            "≤ 300 ms",
        ],
    ]
    head = [
        "relay",
        "direct",
        "plain socat (old image)",
        "ibgwd relay",
        "ibgwd / direct",
        "ibgwd / plain socat",
        "goal",
    ]
    return _table(head, rows)


def ready_tables(ready: dict[str, Any], sim_login: float, sim_restart: float) -> str:
    s = ready["summary"]
    rows = [
        [
            "systemctl start",
            _f(s["start"]["total_s"], 2),
            f"{sim_login:g}",
            _f(s["start"]["overhead_s"], 2),
            _f(s["start"]["after_api_open_s"], 2),
            GOALS["overhead"],
        ],
        [
            "systemctl restart",
            _f(s["restart"]["total_s"], 2),
            f"{sim_login:g}",
            _f(s["restart"]["overhead_s"], 2),
            _f(s["restart"]["after_api_open_s"], 2),
            "",
        ],
        [
            "soft Restart over D-Bus",
            _f(s["soft_restart"]["total_s"], 2),
            f"{sim_restart + sim_login:g} (restart delay + login)",
            _f(s["soft_restart"]["overhead_s"], 2),
            _f(s["soft_restart"]["after_api_open_s"], 2),
            "",
        ],
    ]
    out = _table(
        [
            "time to a client's first reqCurrentTime (s)",
            "total",
            "sim's own configured time",
            "ibgwd overhead (total − sim)",
            "API open → client served",
            "goal",
        ],
        rows,
    )
    for kind in ("start", "restart", "soft_restart"):
        parts = s[kind]["parts_s"]
        out += f"\n\nParts of `{kind}` (s, median):\n\n" + _table(
            list(parts), [[_f(v, 3) for v in parts.values()]]
        )
    return out


def failure_tables(failure: dict[str, Any]) -> str:
    s = failure["summary"]
    rows = [
        [
            kind,
            _f(s[kind]["detected_s"], 2),
            _f(s[kind]["recovery_start_s"], 2),
            _f(failure["bound_s"], 1),
            _f(s[kind]["ready_again_s"], 2),
            _f(s[kind]["client_again_s"], 2),
        ]
        for kind in ("frozen", "killed")
    ]
    return _table(
        [
            "fault (s after it)",
            "first state change",
            "recovery starts",
            "bound: interval × failures",
            "READY again",
            "client served again",
        ],
        rows,
    )


def footprint_tables(fp: dict[str, Any]) -> str:
    idle, scrape, rel = fp["idle"], fp["scrape"], fp["relay_under_scrapes"]
    rows = [
        [
            "ibgwd RSS / PSS MB",
            f"{idle['rss_kib'] / 1024:.1f} / {idle['pss_kib'] / 1024:.1f}",
            "32.6 / 25.0 (GLib daemon floor)",
            GOALS["rss"],
        ],
        [
            f"idle CPU over {idle['seconds']:.0f} s",
            f"{idle['cpu_percent']:.3f} %",
            "0.045 %",
            GOALS["cpu"],
        ],
        [
            "wake-ups/s (voluntary ctxsw, all threads)",
            f"{idle['wakeups_per_s']:.1f}",
            "3.0",
            GOALS["wakeups"],
        ],
        ["wake-ups/s, main thread", f"{idle['main_thread_wakeups_per_s']:.1f}", "", ""],
        ["threads", str(idle["threads"]), "2", ""],
        [
            f"/metrics scrape p50 ms ({scrape['n']} scrapes, {scrape['bytes']} B)",
            f"{scrape['p50_ms']:.2f}",
            "2.77 (prometheus_client)",
            GOALS["scrape"],
        ],
        [
            "relay p99 µs, no scrapes → 20 scrapes/s",
            f"{_f(rel['p99_us_idle'])} → {_f(rel['p99_us_scraped'])} ({_x(rel['ratio'])})",
            "socat: 108 → 735",
            "not moved",
        ],
    ]
    return _table(["footprint", "ibgwd", "floor (perf-floors.md)", "goal"], rows)


def scale_tables(scale: list[dict[str, Any]]) -> str:
    rows = [
        [
            str(r["instances"]),
            f"{r['ready']}/{r['instances']}",
            f"{r['total_s']:.2f}",
            f"{r['per_instance_rss_kib'] / 1024:.0f}",
            f"{r['per_instance_pss_kib'] / 1024:.0f}",
            f"{r['ibgwd_rss_kib'] / 1024:.1f}",
            f"{r['mem_available_drop_per_instance_kib'] / 1024:.0f}",
            _f(r["processes_per_instance"], 0),
        ]
        for r in scale
    ]
    return _table(
        [
            "instances",
            "READY",
            "all READY after s",
            "RSS MB / instance (ibgwd + children)",
            "PSS MB / instance",
            "ibgwd RSS MB",
            "MemAvailable drop MB / instance",
            "processes / instance",
        ],
        rows,
    )


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    d = results.get("daemon", {})
    params = d.get("params", {})
    parts = [
        f"Run {meta['started']} on {meta['host']} ({meta['cpus']} CPUs, kernel {meta['kernel']}),"
        f" mode `{meta['mode']}`, commit `{meta['commit']}`.",
    ]
    if "relay" in results:
        r = results["relay"]
        parts += [
            "## Relay\n\nMedian (min–max) over "
            f"{r['params']['reps']} interleaved repetitions; ratios are medians of per-repetition "
            f"ratios. CPU: {r['cpu_method']}.\n",
            relay_tables(r),
            "\nCommands:\n\n"
            + "\n".join(
                f"- {k}: `{' '.join(v) or '(no relay)'}`" for k, v in r["commands"].items()
            ),
        ]
    if "ready" in d:
        parts += [
            f"## Time to ready\n\nSettings: {params['settings']}; the simulated gateway's "
            f"LoginSeconds = {params['sim_login_s']:g}, RestartDelaySeconds = "
            f"{params['sim_restart_delay_s']:g}. Median (min–max) of {params['ready_reps']}.\n",
            ready_tables(d["ready"], params["sim_login_s"], params["sim_restart_delay_s"]),
        ]
    if "failure" in d:
        parts += [
            f"## Failure detection\n\nProbe interval {d['failure']['probe_interval_s']:g} s, "
            f"timeout {params['settings']['PROBE_TIMEOUT']} s, "
            f"failures {params['settings']['PROBE_FAILURES']}. "
            f"Median (min–max) of {params['failure_reps']}.\n",
            failure_tables(d["failure"]),
        ]
    if "footprint" in d:
        parts += [
            f"## Footprint\n\nIdle window {params['idle_s']:g} s with the shipped probe "
            "settings (PROBE_INTERVAL=10 s).\n",
            footprint_tables(d["footprint"]),
        ]
    if "scale" in d:
        parts += ["## Scale\n", scale_tables(d["scale"])]
    return "\n\n".join(parts) + "\n"


DOC_HEAD = """# Benchmarks

How fast and how light ibgwd is, next to its baselines, measured side by side in one run
(issue 11). The machines are noisy: read medians and ratios. Floors and peer figures are in
`/work/shared/reference/perf-floors.md`. This page is generated from
`bench/results/latest.json` by `bench/run.sh`; do not edit it by hand.

## How to run

```
sudo bench/run.sh            # full run (about 10 minutes), writes bench/results/ and this page
sudo bench/run.sh --quick    # seconds-scale smoke run; writes to a temporary directory only
.venv/bin/python -m bench --only relay   # one part: relay, daemon
```

Root is needed: the daemon parts boot throwaway real-systemd boxes (tests/harness), and relay
CPU is read from cgroup-v1 cpuacct groups. What is measured:

- **Relay**: a C echo backend (`bench/c/echosrv.c`) and a C client (`bench/c/rtclient.c`) on
  loopback. Targets: direct, the old image's plain socat, and ibgwd's relay command built by
  `ibgwd.units.spec.relay_spec` (what ibgwd deploys). Split messages: the client (or the
  backend) writes a 4-byte header and a 60-byte body in two `send()`s and the other side answers
  only complete messages, as the TWS API does; a stall is a round trip over 10 ms.
- **Time to ready**: in a box with the simulated gateway, a real `ib_async` client polls the
  relay from before `systemctl start` until `reqCurrentTime` succeeds; the parts come from
  the journal timestamps of ibgwd and systemd and the simulator's event log. Overhead = total
  minus the simulator's configured login time (and restart delay, for a soft restart).
- **Failure detection**: the gateway's processes are frozen (SIGSTOP, the port still accepts)
  or its main process is killed; times come from ibgwd's `event=state` journal lines.
- **Footprint**: ibgwd's smaps_rollup, CPU (schedstat of all threads) and voluntary context
  switches over the idle window; `/metrics` scrape latency; relay p99 with and without
  20 scrapes/s of the same ibgwd.
- **Scale**: `ibgwd@bN` instances with their own ports and displays, started with one
  `systemctl start`, memory summed over each instance's cgroups.

## Results

"""


def doc(results: dict[str, Any]) -> str:
    return DOC_HEAD + markdown(results).replace("\n## ", "\n### ")
