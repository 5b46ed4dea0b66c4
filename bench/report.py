"""Render benchmark results (the JSON run.py writes) as markdown tables and docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

# Goals: ../shared/reference/perf-floors.md ("suggested goal for ibgwd") and the product's
# measure that matters most (one full login a week, minutes of API outage). Each figure with a
# goal gets a verdict computed here from the results, never typed in.
GOALS = {
    "p50": "relay adds ≤ 30 µs",
    "p99": "relay adds ≤ 100 µs",
    "stalls": "0 of 1500 in each direction",
    "conc": ">= plain socat",
    "relay_cpu": "≤ 300 ms",
    "overhead": "≤ 1 s over the gateway without ibgwd",
    "rss": "≤ 40 MB",
    "cpu": "≤ 0.1 %",
    "wakeups": "≤ 3 /s",
    "scrape": "≤ 5 ms p50",
    "scraped_relay": "not moved (≤ 1.25x)",
    "detection": "≤ interval + failures × timeout",
    "no_login": "0 full logins",
    "no_outage": "0 s",
    "week": "1 full login (Sunday's)",
    "scale": "all READY",
}


def verdict(ok: bool | None) -> str:
    """met / **missed** / not measured (a figure that could not be taken is no pass)."""
    if ok is None:
        return "not measured"
    return "met" if ok else "**missed**"


def _med(value: Any) -> float | None:
    if isinstance(value, dict):
        m = value.get("median")
        return None if m is None else float(m)
    return None if value is None else float(value)


def _max(value: Any) -> float | None:
    if isinstance(value, dict):
        m = value.get("max")
        return None if m is None else float(m)
    return None if value is None else float(value)


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


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


Verdicts = list[list[str]]  # [figure, value, goal, verdict]


def relay_tables(relay: dict[str, Any], out: Verdicts) -> str:
    s = relay["summary"]
    d, p, g = s["direct"], s["plain_socat"], s["ibgwd_relay"]
    rv_d, rv_p = s["ratios"]["ibgwd_vs_direct"], s["ratios"]["ibgwd_vs_plain_socat"]

    def added(key: str) -> float | None:
        a, b = _med(g[key]), _med(d[key])
        return None if a is None or b is None else a - b

    stalls = (g["stalls_client_split"], g["stalls_gateway_split"])
    checks = {
        "p50": _le(added("p50_us"), 30),
        "p99": _le(added("p99_us"), 100),
        "stalls": all(x == 0 for x in stalls),
        "conc": None if rv_p["conc"] is None else rv_p["conc"] >= 1.0,
        "relay_cpu": _le(_med(g["relay_cpu_ms_per_10k"]), 300),
    }
    rows = [
        [
            "64 B ping-pong p50 µs",
            _f(d["p50_us"]),
            _f(p["p50_us"]),
            _f(g["p50_us"]),
            _x(rv_d["p50"]),
            _x(rv_p["p50"]),
            GOALS["p50"],
            verdict(checks["p50"]),
        ],
        [
            "64 B ping-pong p99 µs",
            _f(d["p99_us"]),
            _f(p["p99_us"]),
            _f(g["p99_us"]),
            _x(rv_d["p99"]),
            _x(rv_p["p99"]),
            GOALS["p99"],
            verdict(checks["p99"]),
        ],
        [
            f"stalls > 10 ms, client→gateway split (of {g['split_samples']})",
            str(d["stalls_client_split"]),
            str(p["stalls_client_split"]),
            str(g["stalls_client_split"]),
            "",
            "",
            GOALS["stalls"],
            verdict(g["stalls_client_split"] == 0),
        ],
        [
            f"stalls > 10 ms, gateway→client split (of {g['split_samples']})",
            str(d["stalls_gateway_split"]),
            str(p["stalls_gateway_split"]),
            str(g["stalls_gateway_split"]),
            "",
            "",
            GOALS["stalls"],
            verdict(g["stalls_gateway_split"] == 0),
        ],
        [
            "split-message p99 µs, client→gateway",
            _f(d["split_p99_us"]),
            _f(p["split_p99_us"]),
            _f(g["split_p99_us"]),
            "",
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
            verdict(checks["conc"]),
        ],
        [
            "relay CPU ms per 10k round trips",
            "-",
            _f(p["relay_cpu_ms_per_10k"], 0),
            _f(g["relay_cpu_ms_per_10k"], 0),
            "",
            _x(rv_p.get("cpu")),
            GOALS["relay_cpu"],
            verdict(checks["relay_cpu"]),
        ],
    ]
    out += [
        [
            "relay p50 added over direct",
            f"{_f(added('p50_us'))} µs",
            GOALS["p50"],
            verdict(checks["p50"]),
        ],
        [
            "relay p99 added over direct",
            f"{_f(added('p99_us'))} µs",
            GOALS["p99"],
            verdict(checks["p99"]),
        ],
        [
            "relay stalls on split messages",
            f"{stalls[0]} / {stalls[1]}",
            GOALS["stalls"],
            verdict(checks["stalls"]),
        ],
        [
            "relay throughput, 32 connections, vs plain socat",
            _x(rv_p["conc"]),
            GOALS["conc"],
            verdict(checks["conc"]),
        ],
        [
            "relay CPU per 10k round trips",
            f"{_f(g['relay_cpu_ms_per_10k'], 0)} ms",
            GOALS["relay_cpu"],
            verdict(checks["relay_cpu"]),
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
        "verdict",
    ]
    return _table(head, rows)


def ready_tables(ready: dict[str, Any], sim_login: float, sim_restart: float, out: Verdicts) -> str:
    s = ready["summary"]
    bare = s.get("bare", {})
    vs_bare = s["start"].get("vs_bare_s")
    ok = _le(_med(vs_bare), 1.0)
    rows = [
        [
            "gateway started without ibgwd (Xvfb + ibcstart.sh; client on the API port)",
            _f(bare.get("total_s"), 2),
            f"{sim_login:g}",
            "(baseline)",
            "",
            "",
            "",
        ],
        [
            "systemctl start",
            _f(s["start"]["total_s"], 2),
            f"{sim_login:g}",
            _f(vs_bare, 2),
            _f(s["start"]["overhead_s"], 2),
            GOALS["overhead"],
            verdict(ok),
        ],
        [
            "systemctl restart",
            _f(s["restart"]["total_s"], 2)
            + (
                " (the client never failed: the Gateway outlives ibgwd)"
                if ready["raw"]["restart"]
                and not any(r.get("interrupted", True) for r in ready["raw"]["restart"])
                else ""
            ),
            f"{sim_login:g}",
            "",
            _f(s["restart"]["overhead_s"], 2),
            "",
            "",
        ],
        [
            "soft Restart over D-Bus",
            _f(s["soft_restart"]["total_s"], 2),
            f"{sim_restart + sim_login:g} (restart delay + shutdown + login)",
            "",
            _f(s["soft_restart"]["overhead_s"], 2),
            "",
            "",
        ],
    ]
    out.append(
        [
            "start to a served client, over the gateway without ibgwd",
            f"{_f(vs_bare, 2)} s ({_x(s['start'].get('vs_bare_ratio'))})",
            GOALS["overhead"],
            verdict(ok),
        ]
    )
    text = _table(
        [
            "time to a client's first reqCurrentTime (s)",
            "total",
            "sim's own configured time",
            "ibgwd − gateway without ibgwd (same rep)",
            "total − configured time",
            "goal",
            "verdict",
        ],
        rows,
    )
    for kind in ("start", "restart", "soft_restart"):
        parts = s[kind]["parts_s"]
        text += f"\n\nParts of `{kind}` (s, median):\n\n" + _table(
            list(parts), [[_f(v, 3) for v in parts.values()]]
        )
    return text


def failure_tables(failure: dict[str, Any], out: Verdicts) -> str:
    s = failure["summary"]
    limit = failure["probe_interval_s"] + failure["bound_s"] / failure["probe_interval_s"] * (
        failure.get("probe_timeout_s", failure["probe_interval_s"])
    )
    rows = []
    for kind in ("frozen", "killed"):
        ok = _le(_max(s[kind]["recovery_start_s"]), limit)
        phases = sorted(r["phase"] for r in failure["raw"][kind] if r.get("phase") is not None)
        rows.append(
            [
                kind,
                ", ".join(f"{x:.2f}" for x in phases) or "-",
                _f(s[kind]["detected_s"], 2),
                _f(s[kind]["recovery_start_s"], 2),
                f"{limit:g}",
                verdict(ok),
                _f(s[kind]["ready_again_s"], 2),
                _f(s[kind]["client_again_s"], 2),
            ]
        )
        out.append(
            [
                f"recovery starts after a {kind} gateway (worst of the phases)",
                f"{_f(_max(s[kind]['recovery_start_s']), 2)} s",
                f"≤ {limit:g} s",
                verdict(ok),
            ]
        )
    return _table(
        [
            "fault (s after it)",
            "phases in the probe cycle",
            "first state change",
            "recovery starts",
            "goal: interval + failures × timeout",
            "verdict",
            "READY again",
            "client served again",
        ],
        rows,
    )


def _mb(kib: Any) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f}"


def footprint_tables(fp: dict[str, Any], out: Verdicts) -> str:
    idle, floor = fp["idle"], fp.get("floor_idle", {})
    old = fp.get("old_follower_idle", {})
    scrape, fscrape, rel = fp["scrape"], fp.get("floor_scrape", {}), fp["relay_under_scrapes"]
    rss_ok = _le(idle["rss_kib"] / 1024, 40)
    cpu = idle.get("cgroup_cpu_percent", idle.get("cpu_percent"))
    cpu_ok = _le(cpu, 0.1)
    wake_ok = _le(idle["wakeups_per_s"], 3)
    scrape_ok = _le(scrape["p50_ms"], 5)
    rel_ok = _le(rel["ratio"], 1.25)

    def r(a: Any, b: Any) -> str:
        return _x(None if a is None or not b else a / b)

    rows = [
        [
            "RSS / PSS MB, every process of the unit",
            f"{_mb(idle['rss_kib'])} / {_mb(idle['pss_kib'])}",
            f"{_mb(floor.get('rss_kib'))} / {_mb(floor.get('pss_kib'))}",
            r(idle["rss_kib"], floor.get("rss_kib")),
            f"{_mb(old.get('rss_kib'))} / {_mb(old.get('pss_kib'))}",
            GOALS["rss"],
            verdict(rss_ok),
        ],
        [
            f"idle CPU over {idle['seconds']:.0f} s (cgroup)",
            f"{_f(cpu, 3)} %",
            f"{_f(floor.get('cgroup_cpu_percent'), 3)} %",
            r(cpu, floor.get("cgroup_cpu_percent")),
            f"{_f(old.get('cgroup_cpu_percent'), 3)} %",
            GOALS["cpu"],
            verdict(cpu_ok),
        ],
        [
            "wake-ups/s (voluntary context switches, all threads)",
            _f(idle["wakeups_per_s"]),
            _f(floor.get("wakeups_per_s")),
            r(idle["wakeups_per_s"], floor.get("wakeups_per_s")),
            _f(old.get("wakeups_per_s")),
            GOALS["wakeups"],
            verdict(wake_ok),
        ],
        [
            "processes / threads",
            f"{idle.get('processes', '-')} / {idle['threads']}",
            f"{floor.get('processes', '-')} / {floor.get('threads', '-')}",
            "",
            f"{old.get('processes', '-')} / {old.get('threads', '-')}",
            "",
            "",
        ],
        [
            f"/metrics scrape p50 ms ({scrape['n']} scrapes)",
            f"{scrape['p50_ms']:.2f} ({scrape['bytes']} B)",
            f"{_f(fscrape.get('p50_ms'), 2)} ({fscrape.get('bytes', '-')} B)",
            r(scrape["p50_ms"], fscrape.get("p50_ms")),
            "",
            GOALS["scrape"],
            verdict(scrape_ok),
        ],
        [
            "relay p99 µs, no scrapes → 20 scrapes/s (ratio to no scrapes)",
            f"{_f(rel['p99_us_idle'])} → {_f(rel['p99_us_scraped'])} ({_x(rel['ratio'])})",
            f"→ {_f(rel.get('p99_us_scraped_floor'))} ({_x(rel.get('ratio_floor'))})",
            r(rel["ratio"], rel.get("ratio_floor")),
            "",
            GOALS["scraped_relay"],
            verdict(rel_ok),
        ],
    ]
    out += [
        [
            "ibgwd RSS (all its processes)",
            f"{_mb(idle['rss_kib'])} MB "
            f"({r(idle['rss_kib'], floor.get('rss_kib'))} the floor daemon)",
            GOALS["rss"],
            verdict(rss_ok),
        ],
        [
            "ibgwd idle CPU",
            f"{_f(cpu, 3)} % ({r(cpu, floor.get('cgroup_cpu_percent'))} the floor)",
            GOALS["cpu"],
            verdict(cpu_ok),
        ],
        ["ibgwd wake-ups", f"{_f(idle['wakeups_per_s'])} /s", GOALS["wakeups"], verdict(wake_ok)],
        ["/metrics scrape p50", f"{scrape['p50_ms']:.2f} ms", GOALS["scrape"], verdict(scrape_ok)],
        [
            "relay p99 under 20 scrapes/s of ibgwd",
            f"{_x(rel['ratio'])} (floor daemon scraped instead: {_x(rel.get('ratio_floor'))})",
            GOALS["scraped_relay"],
            verdict(rel_ok),
        ],
    ]
    return _table(
        [
            "footprint (same idle window, same probe interval)",
            "ibgwd",
            "floor daemon (bench/floor_daemon.py)",
            "ibgwd / floor",
            "journalctl --follow (ibgwd's old log follower, alone)",
            "goal",
            "verdict",
        ],
        rows,
    )


CONTINUITY = {
    # kind: (name, outage goal in s or None, full logins goal)
    "nightly_restart": ("the Gateway's nightly restart (its AutoRestartTime)", None, 0),
    "cold_restart": ("Sunday's cold restart (TWS_COLD_RESTART)", None, 1),
    "ibgwd_crash": ("kill -9 of ibgwd (systemd restarts it)", 0.0, 0),
    "ibgwd_restart": ("systemctl restart ibgwd", 0.0, 0),
    "upgrade": ("package upgrade (new files + restart, emulated)", 0.0, 0),
}


def continuity_tables(c: dict[str, Any], out: Verdicts) -> str:
    s = c["summary"]
    week = c["week"]
    rows = []
    for kind, (name, outage_goal, login_goal) in CONTINUITY.items():
        if kind not in s:
            continue
        logins = s[kind]["full_logins"]
        login_ok = (
            None
            if _max(logins) is None
            else (_max(logins) == login_goal and logins["min"] == login_goal)
        )
        outage = s[kind]["outage_s"]
        outage_ok = None if outage_goal is None else _le(_max(outage), outage_goal)
        goal_text = "" if outage_goal is None else f"{outage_goal:g} s"
        login_text = f"{login_goal} full login" + ("s" if login_goal != 1 else "")
        rows.append(
            [
                name,
                str(s[kind]["n"]),
                _f(outage, 2),
                goal_text,
                verdict(outage_ok) if goal_text else "",
                _f(logins, 0),
                login_text,
                verdict(login_ok),
            ]
        )
        out.append([f"full logins per {name}", _f(logins, 0), login_text, verdict(login_ok)])
        out.append(
            [
                f"API outage per {name}",
                f"{_f(outage, 2)} s",
                goal_text,
                verdict(outage_ok) if goal_text else "(no goal: the Gateway restarts)",
            ]
        )
    text = _table(
        [
            "event",
            "times",
            "API outage s (client on the relay port)",
            "goal",
            "verdict",
            "full logins each",
            "goal",
            "verdict",
        ],
        rows,
    )
    steps = ", ".join(x["kind"] for x in week["steps"])
    ok = week["full_logins"] == 1 and week["recovered"]
    out.append(
        ["full logins per simulated week", str(week["full_logins"]), GOALS["week"], verdict(ok)]
    )
    text += (
        f"\n\nThe simulated week ({week['days']} Gateway restarts, {week['wall_s']:g} s of "
        f"wall time) after a first start (its login: {week['full_logins_at_start']}): "
        f"{steps}.\n\n"
        + _table(
            [
                "full logins",
                "sessions restored without login",
                "2FA prompts",
                "API outage in the week, s",
                "goal",
                "verdict",
            ],
            [
                [
                    str(week["full_logins"]),
                    str(week["restored_sessions"]),
                    str(week["twofa_prompts"]),
                    _f(week["outage_s"], 2),
                    GOALS["week"],
                    verdict(ok),
                ]
            ],
        )
    )
    return text


def scale_tables(scale: list[dict[str, Any]], out: Verdicts) -> str:
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
            verdict(r["ready"] == r["instances"]),
        ]
        for r in scale
    ]
    ok = all(r["ready"] == r["instances"] for r in scale)
    out.append(
        [
            "instances READY at every scale",
            ", ".join(f"{r['ready']}/{r['instances']}" for r in scale),
            GOALS["scale"],
            verdict(ok),
        ]
    )
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
            "verdict",
        ],
        rows,
    )


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    d = results.get("daemon", {})
    params = d.get("params", {})
    verdicts: Verdicts = []
    parts: list[str] = []
    if "relay" in results:
        r = results["relay"]
        parts += [
            "## Relay\n\nMedian (min–max) over "
            f"{r['params']['reps']} interleaved repetitions; ratios are medians of per-repetition "
            f"ratios. CPU: {r['cpu_method']}.\n",
            relay_tables(r, verdicts),
            "\nCommands:\n\n"
            + "\n".join(
                f"- {k}: `{' '.join(v) or '(no relay)'}`" for k, v in r["commands"].items()
            ),
        ]
    if "ready" in d:
        parts += [
            f"## Time to ready\n\nSettings: {params['settings']}; the simulated gateway's "
            f"LoginSeconds = {params['sim_login_s']:g}, RestartDelaySeconds = "
            f"{params['sim_restart_delay_s']:g}, ShutdownSeconds = "
            f"{params.get('sim_shutdown_s', 0):g}. Median (min–max) of {params['ready_reps']}. "
            "Baseline, in each repetition: the same gateway started without ibgwd.\n",
            ready_tables(
                d["ready"],
                params["sim_login_s"],
                params["sim_restart_delay_s"] + params.get("sim_shutdown_s", 0),
                verdicts,
            ),
        ]
    if "failure" in d:
        f = d["failure"]
        parts += [
            f"## Failure detection\n\nProbe interval {f['probe_interval_s']:g} s, "
            f"timeout {params['settings']['PROBE_TIMEOUT']} s, "
            f"failures {params['settings']['PROBE_FAILURES']}. Median (min–max) of "
            f"{params['failure_reps']}; each fault lands at a random phase of the probe cycle "
            f"(stratified, seed {f.get('seed', '-')}).\n",
            failure_tables(f, verdicts),
        ]
    if "continuity" in d:
        parts += [
            "## Continuity: API outage and full logins\n\nA week in fast motion in a box of "
            "its own: the simulated Gateway's clock is set at each relaunch so that its nightly "
            "AutoRestartTime, or Sunday's cold restart, comes seconds later; ibgwd is crashed, "
            "restarted and upgraded in between. A real ib_async client connects through the "
            "relay port and asks for the time every 50 ms all along; an outage window runs from "
            "the start of its first failed attempt to the end of the first attempt that worked "
            "again, and belongs to the event during which it began. Full logins: sessions of "
            "the simulated Gateway that logged in with credentials (each costs a 2FA approval "
            "with a real account), as against sessions restored from the Gateway's autorestart "
            "token. Not in the week: reboots, a wrong password. Median (min–max) over the "
            "events of a kind.\n",
            continuity_tables(d["continuity"], verdicts),
        ]
    if "footprint" in d:
        fp = d["footprint"]
        parts += [
            f"## Footprint\n\nIdle window {params['idle_s']:g} s, probe interval "
            f"{fp.get('probe_interval_s', 10):g} s (the shipped setting) for ibgwd and the "
            "floor daemon alike, side by side in one box.\n",
            footprint_tables(fp, verdicts),
        ]
    if "scale" in d:
        parts += ["## Scale\n", scale_tables(d["scale"], verdicts)]
    missed = sum(v[3] == verdict(False) for v in verdicts)
    unmeasured = sum(v[3] == verdict(None) for v in verdicts)
    summary = [
        f"Run {meta['started']} on {meta['host']} ({meta['cpus']} CPUs, kernel {meta['kernel']}),"
        f" mode `{meta['mode']}`, commit `{meta['commit']}`.",
        f"## Verdicts\n\n{len(verdicts)} figures with a goal or a baseline: "
        f"{sum(v[3] == 'met' for v in verdicts)} met, {missed} missed, {unmeasured} not "
        "measured.\n",
        _table(["figure", "measured", "goal", "verdict"], verdicts),
    ]
    return "\n\n".join(summary + parts) + "\n"


DOC_HEAD = """# Benchmarks

How fast and how light ibgwd is, next to baselines measured side by side in the same run: the
network path without a relay and the old image's plain socat, the same simulated gateway
started without ibgwd, and a floor daemon with ibgwd's libraries and duties but nothing else.
Every figure with a goal carries a verdict computed from the results; a missed goal says
**missed**. The machines are noisy: read medians and ratios. This page is generated from
`bench/results/latest.json` by `bench/run.sh`; do not edit it by hand.

## How to run

```
sudo bench/run.sh            # full run (about 15 minutes), writes bench/results/ and this page
sudo bench/run.sh --quick    # smoke run (a few minutes); writes to a temporary directory only
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
  the journal timestamps of ibgwd and systemd and the simulator's event log. The baseline, in
  every repetition: Xvfb and `ibcstart.sh` started by hand with the config ibgwd rendered, a
  client polling the Gateway's API port itself.
- **Failure detection**: the gateway's processes are frozen (SIGSTOP, the port still accepts)
  or its main process is killed, at a random phase of the probe cycle; times come from ibgwd's
  `event=state` journal lines.
- **Continuity**: the API outage a client sees, and the full logins the simulated gateway
  counts, per nightly Gateway restart, per `systemctl restart ibgwd`, per package upgrade, and
  over a simulated week.
- **Footprint**: every process of `ibgwd.service` (smaps_rollup, cgroup CPU, voluntary context
  switches) over an idle window, next to the floor daemon (`bench/floor_daemon.py`) and to the
  `journalctl --follow` child ibgwd used to run, all at once; `/metrics` scrape latency next to
  the floor daemon's prometheus_client server; relay p99 with no scrapes, with 20 scrapes/s of
  ibgwd and with 20 scrapes/s of the floor daemon.
- **Scale**: `ibgwd@bN` instances with their own ports and displays, started with one
  `systemctl start`, memory summed over each instance's cgroups.

## Results

"""


def doc(results: dict[str, Any]) -> str:
    return DOC_HEAD + markdown(results).replace("\n## ", "\n### ")
