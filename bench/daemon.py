"""Daemon benchmarks in a real-systemd box: time to ready, failure detection, footprint, scale.

Each measurement boots a throwaway box (tests/harness), installs ibgwd and the simulated
gateway with tests/system/stack.py, and reads ibgwd's own journal timestamps for the parts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import random
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cbuild import Tools
from bench.relay import ibgwd_relay_argv
from bench.stats import median, percentile, ratio, spread
from ibgwd.units.spec import wait_for_x

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "system")]

import stack  # noqa: E402
from harness import Box  # noqa: E402

log = logging.getLogger(__name__)

INBOX_DIR = "/usr/local/lib/ibgwd-bench"
INBOX = f"{INBOX_DIR}/inbox.py"
FLOOR = f"{INBOX_DIR}/floor_daemon.py"
FLOOR_UNIT = "bench-floor.service"
FLOOR_METRICS_PORT = 9199
OLD_FOLLOWER_UNIT = "bench-journalctl.service"
SHIPPED_PROBE_INTERVAL_S = 10.0  # ibgwd.config.spec PROBE_INTERVAL's default
UNIT = "ibgwd.service"
IBC = "ibgwd-default-ibc-paper.service"
SIM_EVENTS = "/var/lib/ibgwd/default/settings/sim-events.log"
LOGIN_S = 1.0
RESTART_DELAY_S = 2.0
SHUTDOWN_S = 2.0  # the Gateway's shutdown phase before it exits
# Probe settings of the benchmark box; recovery starts as soon as the threshold is reached.
BENCH_SETTINGS = {
    "PROBE_INTERVAL": "1",
    "PROBE_TIMEOUT": "1",
    "PROBE_FAILURES": "3",
    "RECOVERY_BACKOFF": "0",
    "RECOVERY_MAX_PER_HOUR": "60",
}


@dataclass(frozen=True)
class DaemonParams:
    ready_reps: int
    failure_reps: int
    week_quick: bool
    idle_s: float
    scrapes: int
    scrape_lat_reps: int
    scrape_lat_n: int
    scale: tuple[int, ...]


FULL = DaemonParams(
    ready_reps=3,
    failure_reps=4,
    week_quick=False,
    idle_s=60,
    scrapes=200,
    scrape_lat_reps=4,
    scrape_lat_n=10000,
    scale=(1, 4, 8),
)
QUICK = DaemonParams(
    ready_reps=1,
    failure_reps=1,
    week_quick=True,
    idle_s=5,
    scrapes=20,
    scrape_lat_reps=1,
    scrape_lat_n=300,
    scale=(1, 2),
)


# ---- box plumbing ----------------------------------------------------------------------------


@contextlib.contextmanager
def bench_box(
    tools: Tools, settings: Mapping[str, str], sim: Mapping[str, str] | None = None
) -> Iterator[Box]:
    box = Box.start()
    try:
        stack.install(
            box,
            settings,
            sim
            or {
                "LoginSeconds": str(LOGIN_S),
                "RestartDelaySeconds": str(RESTART_DELAY_S),
                "ShutdownSeconds": str(SHUTDOWN_S),
            },
        )
        box.copy_in(REPO / "bench" / "inbox.py", INBOX)
        box.copy_in(REPO / "bench" / "floor_daemon.py", FLOOR)
        box.copy_in(tools.echosrv, f"{INBOX_DIR}/echosrv")
        box.copy_in(tools.rtclient, f"{INBOX_DIR}/rtclient")
        box.run("chmod", "-R", "a+rX", INBOX_DIR)
        yield box
    finally:
        box.stop()


def _venv_site() -> str:
    return str(next((REPO / ".venv" / "lib").glob("python3*/site-packages")))


def inbox(box: Box, *args: str, timeout: float = 120) -> Any:
    r = box.run("/usr/bin/python3", INBOX, *args, env={"PYTHONPATH": _venv_site()}, timeout=timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class Entry:
    t: float  # epoch seconds
    unit: str
    message: str


def journal_since(box: Box, since: float) -> list[Entry]:
    r = box.run(
        "journalctl",
        "-b",
        "-o",
        "json",
        "--no-pager",
        f"--since=@{since - 0.5:.3f}",
        "--output-fields=MESSAGE,_SYSTEMD_UNIT,UNIT,SYSLOG_IDENTIFIER",
        timeout=60,
    )
    out = []
    for line in r.stdout.splitlines():
        d = json.loads(line)
        msg = d.get("MESSAGE")
        if not isinstance(msg, str):
            continue
        t = int(d["__REALTIME_TIMESTAMP"]) / 1e6
        if t >= since:
            out.append(Entry(t, d.get("UNIT") or d.get("_SYSTEMD_UNIT", ""), msg))
    return out


def first(entries: list[Entry], needle: str, after: float = 0.0) -> float | None:
    return next((e.t for e in entries if needle in e.message and e.t >= after), None)


def last(entries: list[Entry], needle: str, before: float = float("inf")) -> float | None:
    found = [e.t for e in entries if needle in e.message and e.t <= before]
    return found[-1] if found else None


def sim_events(box: Box, since: float) -> list[tuple[float, str]]:
    try:
        text = box.path(SIM_EVENTS).read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        stamp, _, rest = line.partition(" ")
        with contextlib.suppress(ValueError):
            if float(stamp) >= since:
                out.append((float(stamp), rest))
    return out


def sim_first(events: list[tuple[float, str]], needle: str, after: float = 0.0) -> float | None:
    return next((t for t, e in events if needle in e and t >= after), None)


class Poller:
    """A real ib_async client in the box, armed before the action, retrying until it works."""

    def __init__(self, box: Box, *, after_failure: bool, port: int = 4004) -> None:
        self._box = box
        armed = f"/run/bench-poll-{time.monotonic_ns()}"
        self._armed = box.path(armed)
        args = ["poll", str(port), armed] + (["--after-failure"] if after_failure else [])
        self._pool = concurrent.futures.ThreadPoolExecutor(1)
        self._future = self._pool.submit(inbox, box, *args, timeout=300)
        deadline = time.monotonic() + 60
        while not self._armed.exists():
            if self._future.done() or time.monotonic() > deadline:
                raise RuntimeError(f"client poller did not start: {self._future.result()}")
            time.sleep(0.02)
        time.sleep(0.3)  # let it make its first attempt

    def result(self) -> float | None:
        out = self._future.result()
        self._pool.shutdown()
        return float(out["t"]) if out.get("ok") else None


def _status(box: Box) -> str:
    return str(stack.show(box, UNIT, "StatusText"))


def _wait_ready(box: Box, timeout: float = 120) -> None:
    stack.wait_for(lambda: _status(box).startswith("ready"), timeout, "ibgwd ready", 0.2)


def _d(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 4)


# ---- (2) time to ready --------------------------------------------------------------------


def _startup_parts(box: Box, t0: float, client: float | None) -> dict[str, Any]:
    j = journal_since(box, t0)
    sim = sim_events(box, t0)
    exec_t = first(j, "Starting ibgwd.service")
    rendered = first(j, "event=unit_started unit=ibgwd-default-display.service")
    display = first(j, "Started ibgwd-default-display.service")
    ibc = first(j, "Started ibgwd-default-ibc-paper.service")
    sim_start = sim_first(sim, "event=starting")
    api_open = sim_first(sim, "event=api_open")
    probed = first(j, "to=ready", after=api_open or 0.0)
    ready = first(j, "Started ibgwd.service") or first(j, "event=ready", after=probed or 0.0)
    return {
        "total_s": _d(client, t0),
        "overhead_s": None if client is None else round(client - t0 - LOGIN_S, 4),
        "parts_s": {
            "systemd_exec": _d(exec_t, t0),
            "config_render": _d(rendered, exec_t),
            "display": _d(display, rendered),
            "units": _d(ibc, display),
            "sim_startup_not_ibgwd": _d(sim_start, ibc),
            "sim_login_not_ibgwd": _d(api_open, sim_start),
            "probe": _d(probed, api_open),
            "relay_and_ready": _d(ready, probed),
            "client": _d(client, ready),
        },
        "after_api_open_s": _d(client, api_open),
    }


def measure_start(box: Box) -> dict[str, Any]:
    s0 = time.time()
    box.run("systemctl", "stop", UNIT, timeout=180)
    stop_s = time.time() - s0
    poller = Poller(box, after_failure=False)
    t0 = time.time()
    stack.start(box)
    returned = time.time()
    result = _startup_parts(box, t0, poller.result())
    result["systemctl_start_returned_s"] = round(returned - t0, 4)
    result["systemctl_stop_before_s"] = round(stop_s, 4)
    return result


def measure_restart(box: Box) -> dict[str, Any]:
    """`systemctl restart ibgwd`: when the Gateway outlives ibgwd the client may never fail;
    then the time to a served client is 0 (it was served throughout)."""
    _wait_ready(box)
    box.run("systemctl", "reset-failed", UNIT, check=False)  # start rate limit of systemd
    watch = OutageWatch(box)
    t0 = time.time()
    box.run("systemctl", "restart", UNIT, timeout=180)
    returned = time.time()
    _wait_ready(box)
    time.sleep(SETTLE_S)
    out = watch.result()
    client = out["windows"][-1][1] if out["windows"] else None
    j = journal_since(box, t0)
    stopped = first(j, "Stopped ibgwd.service") or first(j, "Deactivated successfully")
    result = _startup_parts(box, stopped or t0, client)
    result["interrupted"] = bool(out["windows"])
    result["total_s"] = _d(client, t0) if client is not None else 0.0
    result["overhead_s"] = None if client is None else round(client - t0 - LOGIN_S, 4)
    result["parts_s"] = {"stop": _d(stopped, t0), **result["parts_s"]}
    result["systemctl_restart_returned_s"] = round(returned - t0, 4)
    return result


_last_soft_restart_at = 0


def measure_soft_restart(box: Box) -> dict[str, Any]:
    """Restart over D-Bus: IBC's RESTART, which the Gateway carries out at the next minute
    (here RestartDelaySeconds after the command: the simulator's time compression). A second
    RESTART for the same minute is taken as done already, so each one gets a minute of its own.
    """
    global _last_soft_restart_at
    _wait_ready(box)
    while int(time.time() // 60 + 1) == _last_soft_restart_at or time.time() % 60 >= 57:
        time.sleep(0.5)
    _last_soft_restart_at = int(time.time() // 60 + 1)
    watch = OutageWatch(box)
    t0 = time.time()
    box.run(
        "busctl",
        "call",
        "org.ibgwd.Gateway1.default",
        "/org/ibgwd/Gateway1",
        "org.ibgwd.Gateway1.Manager",
        "Restart",
        "sb",
        "paper",
        "false",
    )
    try:
        stack.wait_for(
            lambda: sim_first(sim_events(box, t0), "event=api_open") is not None,
            120,
            "the Gateway back after the soft restart",
        )
        _wait_ready(box)
        time.sleep(SETTLE_S)
    finally:
        out = watch.result()
    client = out["windows"][-1][1] if out["windows"] else None
    j = journal_since(box, t0)
    sim = sim_events(box, t0)
    sim_start = sim_first(sim, "event=starting")
    shutdown = sim_first(sim, "event=shutdown_started")
    api_open = sim_first(sim, "event=api_open")
    probed = first(j, "to=ready", after=api_open or 0.0)
    total = _d(client, t0)
    configured = RESTART_DELAY_S + SHUTDOWN_S + LOGIN_S
    return {
        "total_s": total,
        "outage_s": round(out["outage_s"], 3),
        "overhead_s": None if total is None else round(total - configured, 4),
        "parts_s": {
            "to_restarting": _d(first(j, "to=restarting"), t0),
            "sim_shutdown_starts": _d(shutdown, t0),
            "sim_start_after": _d(sim_start, t0),
            "sim_api_open_after": _d(api_open, t0),
            "probe": _d(probed, api_open),
            "client": _d(client, probed),
        },
        "after_api_open_s": _d(client, api_open),
    }


# ---- (3) failure detection ----------------------------------------------------------------


def measure_failure(box: Box, kind: str, phase: float) -> dict[str, Any]:
    """``phase`` in [0, 1): where in the probe cycle the fault lands (a fixed sleep after READY
    would always hit the same point of the cycle, and report one point as a distribution)."""
    box.run("systemctl", "reset-failed", UNIT, check=False)  # start rate limit of systemd
    box.run("systemctl", "restart", UNIT, timeout=180)  # fresh recovery budget
    _wait_ready(box)
    ready = first(journal_since(box, time.time() - 30), "event=ready")
    time.sleep(2)
    poller = Poller(box, after_failure=True)
    # Probes run at about READY + k × interval (each is scheduled when the last one ended, so
    # the cycle drifts by the probe's latency, a few ms): aim at ``phase`` of the cycle.
    interval = float(BENCH_SETTINGS["PROBE_INTERVAL"])
    if ready is not None:
        wait = (ready - time.time()) % interval + phase * interval
        time.sleep(wait)
    ibc_pid = stack.show(box, IBC, "MainPID")
    t0 = time.time()
    if kind == "frozen":
        box.run("systemctl", "kill", "--kill-whom=all", "--signal=SIGSTOP", IBC)
    else:
        box.run("kill", "-9", ibc_pid)
    client = poller.result()
    j = journal_since(box, t0)
    recovering = first(j, "to=recovering")
    ready = first(j, "to=ready", after=recovering or t0)
    return {
        "phase": round(phase, 3),
        "detected_s": _d(first(j, "event=state mode=paper from=ready"), t0),
        "recovery_start_s": _d(recovering, t0),
        "ready_again_s": _d(ready, t0),
        "client_again_s": _d(client, t0),
    }


# ---- (4) footprint ------------------------------------------------------------------------


def measure_footprint(box: Box, tools: Tools, p: DaemonParams) -> dict[str, Any]:
    """ibgwd (every process of its unit) next to its baselines, over the same idle window with
    the same probe interval: the floor daemon (bench/floor_daemon.py) and the journalctl
    follower ibgwd used to spawn, measured alone."""
    del tools
    # Idle cost with the shipped probe settings (the failure benchmarks above use 1 s probes).
    conf = box.path("/etc/ibgwd/ibgwd.conf")
    lines = conf.read_text().splitlines()
    conf.write_text("".join(f"{ln}\n" for ln in lines if ln.split("=", 1)[0] not in BENCH_SETTINGS))
    box.run("systemctl", "reset-failed", UNIT, check=False)
    box.run("systemctl", "restart", UNIT, timeout=120)
    _wait_ready(box)
    box.run(
        "systemd-run",
        "--collect",
        f"--unit={FLOOR_UNIT}",
        "--property=Type=notify",
        "--property=WatchdogSec=60",
        "/usr/bin/python3",
        FLOOR,
        str(FLOOR_METRICS_PORT),
        "4002",
        f"{SHIPPED_PROBE_INTERVAL_S:g}",
    )
    box.run(
        "systemd-run",
        "--collect",
        f"--unit={OLD_FOLLOWER_UNIT}",
        "journalctl",
        "--follow",
        "--lines=0",
        "--output=cat",
        f"--unit={IBC}",
    )
    time.sleep(3)
    units = (UNIT, FLOOR_UNIT, OLD_FOLLOWER_UNIT)
    idle = inbox(box, "idleunits", str(p.idle_s), *units, timeout=p.idle_s + 60)
    scrape = inbox(box, "scrape", "http://127.0.0.1:9108/metrics", str(p.scrapes))
    floor_scrape = inbox(
        box, "scrape", f"http://127.0.0.1:{FLOOR_METRICS_PORT}/metrics", str(p.scrapes)
    )
    box.run("systemctl", "stop", OLD_FOLLOWER_UNIT, check=False)
    under_scrapes = _relay_under_scrapes(box, p)
    box.run("systemctl", "stop", FLOOR_UNIT, check=False)
    return {
        "probe_interval_s": SHIPPED_PROBE_INTERVAL_S,
        "idle": idle[UNIT],
        "floor_idle": idle[FLOOR_UNIT],
        "old_follower_idle": idle[OLD_FOLLOWER_UNIT],
        "scrape": scrape,
        "floor_scrape": floor_scrape,
        "relay_under_scrapes": under_scrapes,
    }


def _relay_under_scrapes(box: Box, p: DaemonParams) -> dict[str, Any]:
    """Relay p99 (ibgwd's relay command in front of the C echo backend) with and without
    20 Hz scrapes of the real ibgwd's /metrics, and of the floor daemon's (the same-run
    baseline: what any prometheus_client scrape costs the box), rotating."""
    box.run(
        "systemd-run",
        "--collect",
        "--unit=bench-echo",
        f"{INBOX_DIR}/echosrv",
        "/run/bench-echo.port",
    )
    stack.wait_for(lambda: box.path("/run/bench-echo.port").exists(), 10, "echo backend")
    api = int(box.path("/run/bench-echo.port").read_text())
    relay_port = 14999
    box.run("systemd-run", "--collect", "--unit=bench-relay", *ibgwd_relay_argv(api, relay_port))
    time.sleep(0.5)
    urls = {
        "scraped": "http://127.0.0.1:9108/metrics",
        "scraped_floor": f"http://127.0.0.1:{FLOOR_METRICS_PORT}/metrics",
    }
    samples: dict[str, list[float]] = {"idle": [], "scraped": [], "scraped_floor": []}
    order = list(samples)
    try:
        for rep in range(p.scrape_lat_reps):
            for case in order[rep % 3 :] + order[: rep % 3]:
                if case in urls:
                    box.run(
                        "systemd-run",
                        "--collect",
                        "--unit=bench-scraper",
                        "/usr/bin/python3",
                        INBOX,
                        "scrapeloop",
                        urls[case],
                        "20",
                    )
                    time.sleep(0.5)
                r = box.run(
                    f"{INBOX_DIR}/rtclient",
                    "lat",
                    str(relay_port),
                    str(p.scrape_lat_n),
                    "64",
                    timeout=300,
                )
                samples[case].append(json.loads(r.stdout)["p99_us"])
                if case in urls:
                    box.run("systemctl", "stop", "bench-scraper", check=False)
    finally:
        box.run("systemctl", "stop", "bench-relay", "bench-echo", check=False)
    return {
        "p99_us_idle": spread(samples["idle"]),
        "p99_us_scraped": spread(samples["scraped"]),
        "p99_us_scraped_floor": spread(samples["scraped_floor"]),
        "ratio": ratio(median(samples["scraped"]), median(samples["idle"])),
        "ratio_floor": ratio(median(samples["scraped_floor"]), median(samples["idle"])),
    }


# ---- baseline: the gateway without ibgwd ---------------------------------------------------


def _exec_argv(box: Box, unit: str) -> list[str]:
    """argv of a running unit's ExecStart (ours have no spaces in their arguments)."""
    text = stack.show(box, unit, "ExecStart")
    return text.split("argv[]=", 1)[1].split(" ;", 1)[0].split()


def measure_bare(box: Box) -> dict[str, Any]:
    """The same simulated gateway started without ibgwd, as the old image's scripts do: Xvfb,
    then ibcstart.sh with the config.ini ibgwd rendered; a client polls the API port itself."""
    _wait_ready(box)
    argv = _exec_argv(box, IBC)
    ini = box.path("/run/ibgwd/default/ibc/config-paper.ini").read_bytes()
    box.run("systemctl", "stop", UNIT, timeout=120)
    bare = box.path("/run/bench-bare")
    bare.mkdir(exist_ok=True)
    (bare / "config.ini").write_bytes(ini)  # 0600 in a 0700 directory: it holds the password
    box.run("chown", "-R", "ibgateway:", "/run/bench-bare")
    box.run("chmod", "0700", "/run/bench-bare")
    box.run("chmod", "0600", "/run/bench-bare/config.ini")
    argv = [
        ("--ibc-ini=/run/bench-bare/config.ini" if a.startswith("--ibc-ini=") else a) for a in argv
    ]
    settings = next(a.split("=", 1)[1] for a in argv if a.startswith("--tws-settings-path="))
    common = ["--property=User=ibgateway", "--setenv=HOME=/var/lib/ibgwd/default/home"]
    box.run(
        "systemd-run",
        "--collect",
        "--unit=bench-bare-x",
        *common,
        "/usr/bin/Xvfb",
        ":1",
        "-screen",
        "0",
        "1024x768x24",
        "-nolisten",
        "tcp",
    )
    box.run(*wait_for_x(1), timeout=30, user="ibgateway")  # as ibgwd's IBC unit waits
    poller = Poller(box, after_failure=False, port=4002)
    t0 = time.time()
    try:
        box.run(
            "systemd-run",
            "--collect",
            "--unit=bench-bare-ibc",
            *common,
            f"--working-directory={settings}",
            "--setenv=DISPLAY=:1",
            *argv,
        )
        client = poller.result()
    finally:
        box.run("systemctl", "stop", "bench-bare-ibc", "bench-bare-x", check=False, timeout=120)
    sim = sim_events(box, t0)
    return {
        "total_s": _d(client, t0),
        "sim_startup_s": _d(sim_first(sim, "event=starting"), t0),
        "api_open_s": _d(sim_first(sim, "event=api_open"), t0),
    }


# ---- continuity: API outage and full logins per event ------------------------------------


class OutageWatch:
    """A real client on the relay port, trying every 50 ms, armed before the event."""

    def __init__(self, box: Box, port: int = 4004) -> None:
        self._box = box
        stamp = time.monotonic_ns()
        armed, self._stop = f"/run/bench-outage-{stamp}", f"/run/bench-outage-{stamp}.stop"
        self._pool = concurrent.futures.ThreadPoolExecutor(1)
        self._future = self._pool.submit(
            inbox, box, "outage", str(port), armed, self._stop, timeout=900
        )
        stack.wait_for(lambda: box.path(armed).exists() or self._future.done(), 60, "the client")
        time.sleep(0.5)

    def result(self) -> dict[str, Any]:
        self._box.path(self._stop).touch()
        out: dict[str, Any] = self._future.result()
        self._pool.shutdown()
        return out


def full_logins(events: list[tuple[float, str]]) -> dict[str, int]:
    """Sessions of the simulated gateway that logged in with credentials (the ones that cost a
    2FA approval with a real account), as against sessions IBC restored from the Gateway's
    autorestart token; and 2FA prompts actually shown."""
    full = restored = 0
    resumed = False
    for _, e in events:
        if "event=starting" in e:
            resumed = False
        elif "event=autorestart_consumed" in e:
            resumed = True
        elif "event=login_completed" in e:
            if resumed:
                restored += 1
            else:
                full += 1
    prompts = sum("event=twofa_initiated" in e for _, e in events)
    return {"full_logins": full, "restored_sessions": restored, "twofa_prompts": prompts}


def ibgwd_restart(box: Box) -> None:
    box.run("systemctl", "reset-failed", UNIT, check=False)
    box.run("systemctl", "restart", UNIT, timeout=180)


def upgrade(box: Box) -> None:
    """What `apt upgrade` of the package does to a running ibgwd (dh_installsystemd
    --restart-after-upgrade): new files, then `systemctl restart ibgwd.service`. Emulated: the
    same code is copied in again (a real .deb round trip is tests/system/test_deb.py's job)."""
    box.copy_in(REPO / "ibgwd", f"{stack.SRC}/ibgwd")
    box.run("chmod", "-R", "a+rX", stack.SRC)
    box.run("systemctl", "daemon-reload")
    ibgwd_restart(box)


def ibgwd_crash(box: Box) -> None:
    """kill -9 of ibgwd; systemd restarts it (Restart=on-failure, after RestartSec)."""
    pid = stack.show(box, UNIT, "MainPID")
    box.run("kill", "-9", pid)
    stack.wait_for(lambda: stack.show(box, UNIT, "MainPID") not in ("0", pid), 60, "a new ibgwd")


IBGWD_EVENTS = {"ibgwd_crash": ibgwd_crash, "ibgwd_restart": ibgwd_restart, "upgrade": upgrade}
SETTLE_S = 3.0
# The Gateway's clock is compressed as in tests/system/test_lifecycle_week.py: each relaunched
# Gateway sees 15 s before its AutoRestartTime (ibgwd's default 11:45 PM), or before Sunday's
# TWS_COLD_RESTART; on one day it sees 75 s before, which leaves room for ibgwd's own events.
WEEK_SIM = {"ShutdownSeconds": "2", "LoginSeconds": "1", "RestartDelaySeconds": "2"}
NIGHT = "23:44:45"
ROOMY_NIGHT = "23:43:45"
COLD = "07:04:45"
WEEK_SETTINGS = {"TWS_COLD_RESTART": "07:05", "LOGIN_TIMEOUT": "60"}
# (what happens, the clock the Gateway relaunched by it sees): a week from Monday night on
FULL_WEEK = [
    ("start", (NIGHT, "monday")),
    ("nightly_restart", (NIGHT, "tuesday")),
    ("nightly_restart", (ROOMY_NIGHT, "wednesday")),
    ("ibgwd_crash", None),
    ("ibgwd_restart", None),
    ("upgrade", None),
    ("nightly_restart", (NIGHT, "thursday")),
    ("nightly_restart", (NIGHT, "friday")),
    ("nightly_restart", (NIGHT, "saturday")),
    ("nightly_restart", (COLD, "sunday")),
    ("cold_restart", ("12:00:00", "sunday")),
]
QUICK_WEEK = [
    ("start", (ROOMY_NIGHT, "saturday")),
    ("ibgwd_crash", None),
    ("ibgwd_restart", None),
    ("upgrade", None),
    ("nightly_restart", (COLD, "sunday")),
    ("cold_restart", ("12:00:00", "sunday")),
]


def _count(box: Box, event: str) -> int:
    return sum(1 for _, e in sim_events(box, 0) if f"event={event}" in e)


def measure_week(tools: Tools, quick: bool) -> dict[str, Any]:
    """A week in fast motion, in a box of its own, with a real client on the relay port all
    along: each step's API outage and full logins, and the week's. The Gateway's own nightly
    restarts and Sunday's cold restart come from its (simulated) clock as in production;
    ibgwd is crashed, restarted and upgraded in between. Not included: reboots, a wrong
    password."""
    import lifecycle_kit as kit  # the simulated clock of the lifecycle tests

    plan = QUICK_WEEK if quick else FULL_WEEK
    settings = stack.base_settings() | BENCH_SETTINGS | WEEK_SETTINGS
    first_clock = plan[0][1]
    assert first_clock is not None
    hh, mm, ss = (int(x) for x in first_clock[0].split(":"))
    start_clock = f"{hh:02d}:{mm:02d}:{max(ss - 15, 0):02d}"  # the start takes a few seconds
    with bench_box(tools, settings, WEEK_SIM | kit.sim_clock(start_clock, first_clock[1])) as box:
        wall0 = time.time()
        stack.start(box)
        _wait_ready(box)
        watch = OutageWatch(box)
        steps: list[dict[str, Any]] = []
        restarts = _count(box, "shutdown_started")
        for kind, clock in plan[1:]:
            t0 = time.time()
            if kind in IBGWD_EVENTS:
                IBGWD_EVENTS[kind](box)
            else:
                stack.wait_for(
                    lambda n=restarts: _count(box, "shutdown_started") > n,
                    150,
                    f"the Gateway's {kind}",
                    0.1,
                )
                restarts += 1
                if clock is not None:
                    stack.write_sim_conf(box, WEEK_SIM | kit.sim_clock(*clock))
                down = [t for t, e in sim_events(box, 0) if "event=shutdown_started" in e][-1]
                stack.wait_for(
                    lambda t=down: sim_first(sim_events(box, t), "event=api_open") is not None,
                    150,
                    f"the Gateway back after its {kind}",
                    0.1,
                )
            _wait_ready(box, 180)
            time.sleep(1)
            steps.append({"kind": kind, "t0": t0, "t1": time.time()})
        time.sleep(SETTLE_S)
        out = watch.result()
        events = sim_events(box, 0)
    for i, step in enumerate(steps):
        end = steps[i + 1]["t0"] if i + 1 < len(steps) else float("inf")
        mine = [w for w in out["windows"] if step["t0"] <= w[0] < end]
        step["outage_s"] = round(sum(b - a for a, b in mine), 3)
        step.update(full_logins([(t, e) for t, e in events if step["t0"] <= t < end]))
    week = full_logins([(t, e) for t, e in events if t >= steps[0]["t0"]]) if steps else {}
    return {
        "steps": steps,
        "days": len([s for s in steps if s["kind"] in ("nightly_restart", "cold_restart")]),
        "full_logins_at_start": full_logins([(t, e) for t, e in events if t < steps[0]["t0"]])[
            "full_logins"
        ]
        if steps
        else None,
        "outage_s": round(out["outage_s"], 3),
        "recovered": out["recovered"],
        "wall_s": round(time.time() - wall0, 1),
        **week,
    }


def summarize_week(week: dict[str, Any]) -> dict[str, Any]:
    kinds = sorted({s["kind"] for s in week["steps"]})
    return {
        kind: {
            f: spread([s[f] for s in week["steps"] if s["kind"] == kind])
            for f in ("outage_s", "full_logins", "twofa_prompts")
        }
        | {"n": sum(s["kind"] == kind for s in week["steps"])}
        for kind in kinds
    }


# ---- (5) scale -----------------------------------------------------------------------------


def instance_settings(i: int) -> dict[str, str]:
    base: dict[str, str] = stack.base_settings()
    return base | {
        "API_PORT_PAPER": str(4100 + i * 10),
        "RELAY_PORT_PAPER": str(4101 + i * 10),
        "COMMAND_PORT_PAPER": str(4102 + i * 10),
        "DISPLAY_NUMBER": str(20 + i),
        "METRICS_ADDRESS": "",
    }


def _mem_available_kib(box: Box) -> int:
    for line in box.run("cat", "/proc/meminfo").stdout.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def measure_scale(tools: Tools, n: int) -> dict[str, Any]:
    names = [f"b{i}" for i in range(1, n + 1)]
    with bench_box(tools, stack.base_settings()) as box:
        for i, name in enumerate(names, start=1):
            stack.write_conf(box, f"/etc/ibgwd/{name}.conf", instance_settings(i))
        time.sleep(1)
        avail0 = _mem_available_kib(box)
        units = [f"ibgwd@{name}.service" for name in names]
        t0 = time.monotonic()
        r = box.run("systemctl", "start", *units, check=False, timeout=600)
        total = time.monotonic() - t0
        statuses = {u: stack.show(box, u, "StatusText") for u in units}
        ready = sum(s.startswith("ready") for s in statuses.values())
        time.sleep(2)
        groups = [g for name in names for g in (f"ibgwd@{name}.service", f"ibgwd-{name}.slice")]
        mem = inbox(box, "mem", *groups)
        avail1 = _mem_available_kib(box)
        per = [
            {
                "rss_kib": mem[f"ibgwd@{x}.service"]["rss_kib"]
                + mem[f"ibgwd-{x}.slice"]["rss_kib"],
                "pss_kib": mem[f"ibgwd@{x}.service"]["pss_kib"]
                + mem[f"ibgwd-{x}.slice"]["pss_kib"],
                "ibgwd_rss_kib": mem[f"ibgwd@{x}.service"]["rss_kib"],
                "processes": mem[f"ibgwd@{x}.service"]["pids"] + mem[f"ibgwd-{x}.slice"]["pids"],
            }
            for x in names
        ]
        return {
            "instances": n,
            "start_rc": r.returncode,
            "ready": ready,
            "total_s": round(total, 3),
            "per_instance_rss_kib": median([x["rss_kib"] for x in per]),
            "per_instance_pss_kib": median([x["pss_kib"] for x in per]),
            "ibgwd_rss_kib": median([x["ibgwd_rss_kib"] for x in per]),
            "processes_per_instance": median([x["processes"] for x in per]),
            "mem_available_drop_per_instance_kib": (avail0 - avail1) / n,
        }


# ---- driver --------------------------------------------------------------------------------


def run(tools: Tools, p: DaemonParams) -> dict[str, Any]:
    out: dict[str, Any] = {
        "params": vars(p)
        | {
            "settings": BENCH_SETTINGS,
            "sim_login_s": LOGIN_S,
            "sim_restart_delay_s": RESTART_DELAY_S,
            "sim_shutdown_s": SHUTDOWN_S,
        }
    }
    with bench_box(tools, stack.base_settings() | BENCH_SETTINGS) as box:
        stack.start(box)
        _wait_ready(box)
        ready: dict[str, list[dict[str, Any]]] = {
            "bare": [],
            "start": [],
            "restart": [],
            "soft_restart": [],
        }
        for rep in range(p.ready_reps):
            ready["bare"].append(measure_bare(box))  # leaves ibgwd stopped
            ready["start"].append(measure_start(box))
            ready["restart"].append(measure_restart(box))
            ready["soft_restart"].append(measure_soft_restart(box))
            log.info("event=ready_rep_done rep=%d", rep + 1)
        out["ready"] = {"raw": ready, "summary": _summarize_ready(ready)}
        rng = random.Random()
        seed = rng.randrange(1 << 30)
        rng.seed(seed)
        failure: dict[str, list[dict[str, Any]]] = {"frozen": [], "killed": []}
        phases = {}
        for kind in failure:
            # stratified: one fault in each 1/reps of the probe cycle, in random order
            strata = [(i + rng.random()) / p.failure_reps for i in range(p.failure_reps)]
            rng.shuffle(strata)
            phases[kind] = strata
        for rep in range(p.failure_reps):
            for kind in ("frozen", "killed") if rep % 2 == 0 else ("killed", "frozen"):
                failure[kind].append(measure_failure(box, kind, phases[kind][rep]))
            log.info("event=failure_rep_done rep=%d", rep + 1)
        bound = float(BENCH_SETTINGS["PROBE_INTERVAL"]) * int(BENCH_SETTINGS["PROBE_FAILURES"])
        out["failure"] = {
            "raw": failure,
            "seed": seed,
            "bound_s": bound,
            "probe_interval_s": float(BENCH_SETTINGS["PROBE_INTERVAL"]),
            "probe_timeout_s": float(BENCH_SETTINGS["PROBE_TIMEOUT"]),
            "summary": {
                k: {f: spread([r[f] for r in v if r[f] is not None]) for f in v[0]}
                for k, v in failure.items()
            },
        }
        out["footprint"] = measure_footprint(box, tools, p)
    week = measure_week(tools, quick=p.week_quick)
    out["continuity"] = {"week": week, "summary": summarize_week(week)}
    log.info("event=week_done")
    out["scale"] = []
    for n in p.scale:
        out["scale"].append(measure_scale(tools, n))
        log.info("event=scale_done instances=%d", n)
    return out


def _summarize_ready(ready: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    bare = ready.get("bare", [])
    summary["bare"] = {
        k: spread([r[k] for r in bare if r[k] is not None])
        for k in ("total_s", "sim_startup_s", "api_open_s")
    }
    for kind, runs in ready.items():
        if kind == "bare":
            continue
        parts = {
            k: median([r["parts_s"][k] for r in runs if r["parts_s"][k] is not None])
            for k in runs[0]["parts_s"]
        }
        summary[kind] = {
            "total_s": spread([r["total_s"] for r in runs if r["total_s"] is not None]),
            "overhead_s": spread([r["overhead_s"] for r in runs if r["overhead_s"] is not None]),
            "after_api_open_s": median(
                [r["after_api_open_s"] for r in runs if r.get("after_api_open_s") is not None]
            ),
            "parts_s": parts,
        }
    # ibgwd's start against the gateway started without it, rep by rep (same run, same box)
    pairs = [
        (s["total_s"], b["total_s"])
        for s, b in zip(ready.get("start", []), bare, strict=False)
        if s["total_s"] is not None and b["total_s"] is not None
    ]
    summary["start"]["vs_bare_s"] = spread([round(a - b, 4) for a, b in pairs])
    summary["start"]["vs_bare_ratio"] = median([ratio(a, b) for a, b in pairs])
    return summary


__all__ = ["percentile"]
