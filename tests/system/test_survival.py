"""The IB session outlives ibgwd: a crash, a watchdog restart and `systemctl restart` of ibgwd
leave the display, IBC + Gateway, VNC and relay running under real systemd. Each test holds one
relayed client across it and connects a new client every 0.2 s; full logins are counted by the
simulator (sim-events.log)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

UNIT = "ibgwd.service"
IBC = "ibgwd-default-ibc-paper.service"
CHILDREN = (
    "ibgwd-default-display.service",
    IBC,
    "ibgwd-default-vnc.service",
    "ibgwd-default-relay-paper.service",
)
EVENTS = "/var/lib/ibgwd/default/settings/sim-events.log"
RELAY_PORT = 4004
CADENCE_S = 0.2

# Runs in the box: one ib_async client held on the relay for the whole test, asking the time at
# each beat, and a new client (handshake, startApi, reqCurrentTime) every CADENCE_S.
LOAD = f"""
import asyncio, json, sys, threading, time
from ib_async import IB
from ibgwd.probes.api import probe_full

PORT = int(sys.argv[1])
done = threading.Event()  # set when the test closes stdin
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()

async def main():
    ib = IB()
    await ib.connectAsync("127.0.0.1", PORT, clientId=42, timeout=20)
    print(json.dumps({{"connected": True}}), flush=True)
    i = 0
    while not done.is_set():
        t = time.time()
        try:
            await asyncio.wait_for(ib.reqCurrentTimeAsync(), 2)
            held = ib.isConnected()
        except Exception:
            held = False
        r = await asyncio.to_thread(probe_full, "127.0.0.1", PORT, 100 + i % 100, 1.0)
        print(json.dumps({{"t": t, "held": held, "new": r.outcome.alive}}), flush=True)
        i += 1
        await asyncio.sleep(max(0.0, {CADENCE_S} - (time.time() - t)))

asyncio.run(main())
"""


@dataclass(frozen=True)
class Load:
    samples: int
    held_failures: int
    new_failures: int
    outage_s: float  # the longest run of failed new clients, first failure to next success


def full_logins(box: Box) -> int:
    """Logins that were not a token (autorestart) relaunch: each may cost a 2FA approval."""
    text = box.path(EVENTS).read_text(encoding="utf-8")
    return text.count("event=login_completed") - text.count("event=autorestart_consumed")


def gateway_starts(box: Box) -> int:
    return box.path(EVENTS).read_text(encoding="utf-8").count("event=starting")


def pids(box: Box) -> dict[str, str]:
    return {u: stack.show(box, u, "MainPID") for u in CHILDREN}


def client_libs(box: Box) -> str:
    """Where the box finds ib_async: the checkout's venv, or (a box on another root, e.g. clean
    Debian, where the venv is not visible) a copy of ib_async and what it imports."""
    venv_site = next((stack.REPO / ".venv" / "lib").glob("python3*/site-packages")).resolve()
    if box.run("test", "-d", str(venv_site / "ib_async"), check=False).returncode == 0:
        return str(venv_site)
    libs = "/usr/local/lib/ibgwd-test-clients"
    wanted = ("ib_async", "aeventkit", "eventkit", "nest_asyncio", "numpy", "tzdata")
    for entry in venv_site.iterdir():
        if entry.name.split("-")[0].removesuffix(".py").split(".")[0] in wanted:
            box.copy_in(entry, f"{libs}/{entry.name}")
    return libs


@contextmanager
def client_load(box: Box) -> Iterator[list[Load]]:
    """Run the held + new clients while the body runs; the result is appended on exit."""
    proc = subprocess.Popen(
        box.command("/usr/bin/python3", "-c", LOAD, str(RELAY_PORT)),
        env=box.environment(env={"PYTHONPATH": f"{client_libs(box)}:{stack.SRC}"}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if '"connected"' not in first:
        proc.kill()
        raise AssertionError(f"held client did not connect: {first}{proc.stderr.read()}")
    result: list[Load] = []
    try:
        time.sleep(2)  # a baseline before the event
        yield result
        time.sleep(3)  # and after
    finally:
        try:
            out, err = proc.communicate(timeout=30)  # closes stdin: the load ends
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    rows = [json.loads(line) for line in out.splitlines() if line.startswith('{"t"')]
    assert rows, err
    outage, start = 0.0, None
    for row in rows:
        if not row["new"] and start is None:
            start = row["t"]
        elif row["new"] and start is not None:
            outage, start = max(outage, row["t"] - start), None
    if start is not None:
        outage = max(outage, rows[-1]["t"] - start)
    result.append(
        Load(
            samples=len(rows),
            held_failures=sum(not r["held"] for r in rows),
            new_failures=sum(not r["new"] for r in rows),
            outage_s=outage,
        )
    )


def ready(box: Box) -> bool:
    return stack.show(box, UNIT, "StatusText").startswith("ready")


@pytest.fixture
def running(box: Box) -> Box:
    stack.install(box, stack.base_settings() | {"VNC_SERVER_PASSWORD": "vnc-Secret-7f3a"})
    stack.start(box)
    stack.wait_for(lambda: stack.show(box, CHILDREN[-1], "ActiveState") == "active", 30, "relay")
    return box


def time_to_ready(box: Box) -> str:
    """The restarted ibgwd's own figure: its start to READY=1 (an adopted Gateway is probed at
    once)."""
    found = re.findall(r"event=ready time_to_ready_s=([0-9.]+)", box.journal(UNIT))
    return f"{float(found[-1]):.2f} s" if found else "?"


def assert_survived(box: Box, before: dict[str, str], logins: int, load: Load, what: str) -> None:
    print(
        f"{what}: outage {load.outage_s:.2f} s, new clients failed {load.new_failures}/"
        f"{load.samples}, held client failures {load.held_failures}, "
        f"full logins +{full_logins(box) - logins}, ibgwd ready again after {time_to_ready(box)}"
    )
    assert pids(box) == before  # no child was restarted
    assert full_logins(box) == logins
    assert load.held_failures == 0
    # Served throughout: at most one second's worth of failed new clients (none expected).
    assert load.new_failures <= 1 / CADENCE_S


def restart_and_wait(box: Box, action: str) -> None:
    old = stack.show(box, UNIT, "MainPID")
    restarts = int(stack.show(box, UNIT, "NRestarts"))
    if action == "kill":
        box.run("kill", "-9", old)
    elif action == "restart":
        box.run("systemctl", "restart", UNIT, timeout=120)
    else:
        box.run("kill", "-STOP", old)  # the watchdog (WatchdogSec=3s below) restarts it
    stack.wait_for(
        lambda: stack.show(box, UNIT, "MainPID") not in ("0", old), 90, "ibgwd to run again"
    )
    stack.wait_for(lambda: ready(box), 60, "ibgwd ready again")
    if action != "restart":
        assert int(stack.show(box, UNIT, "NRestarts")) == restarts + 1


@pytest.mark.parametrize("action", ["kill", "restart"])
def test_gateway_survives_kill_9_and_restart_of_ibgwd(running: Box, action: str) -> None:
    box = running
    before, logins, starts = pids(box), full_logins(box), gateway_starts(box)
    with client_load(box) as result:
        restart_and_wait(box, action)
    assert_survived(box, before, logins, result[0], f"{action} of ibgwd")
    assert gateway_starts(box) == starts
    journal = box.journal(UNIT)
    assert "event=unit_adopted unit=" + IBC in journal
    if action == "restart":
        assert "kind=detach" in journal


def test_gateway_survives_the_watchdog_restarting_a_frozen_ibgwd(box: Box) -> None:
    dropin = box.path("/etc/systemd/system/ibgwd.service.d/watchdog.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nWatchdogSec=3s\n", encoding="utf-8")
    stack.install(box, stack.base_settings() | {"VNC_SERVER_PASSWORD": "vnc-Secret-7f3a"})
    stack.start(box)
    stack.wait_for(lambda: stack.show(box, CHILDREN[-1], "ActiveState") == "active", 30, "relay")
    before, logins = pids(box), full_logins(box)
    with client_load(box) as result:
        restart_and_wait(box, "stop")
    assert_survived(box, before, logins, result[0], "watchdog restart of a frozen ibgwd")
    assert "watchdog timeout" in box.journal(UNIT).lower()


def test_dual_reload_changing_both_config_ini_restarts_each_ibc_once(box: Box) -> None:
    """The re-entrancy reproduction under real systemd: a reload that changes both gateways'
    config.ini, while IBC takes longer than 100 ms to stop, used to run nested main-loop
    iterations (KeyError 'ibc-live', a recovery that never happened, a relay left stopped)."""
    settings = stack.base_settings() | {"TRADING_MODE": "both", "READ_ONLY_API": "no"}
    stack.install(box, settings)
    stack.start(box)
    relays = ("ibgwd-default-relay-live.service", "ibgwd-default-relay-paper.service")
    stack.wait_for(
        lambda: all(stack.show(box, r, "ActiveState") == "active" for r in relays), 30, "relays"
    )
    logs = {m: f"/var/lib/ibgwd/default/settings_{m}/sim-events.log" for m in ("live", "paper")}

    def starts(mode: str) -> int:
        return box.path(logs[mode]).read_text(encoding="utf-8").count("event=starting")

    assert (starts("live"), starts("paper")) == (1, 1)
    ibc = {m: stack.show(box, f"ibgwd-default-ibc-{m}.service", "MainPID") for m in logs}
    for m in logs:  # a real Gateway takes seconds to stop: make each IBC stop job last 1 s
        dropin = box.path(f"/etc/systemd/system/ibgwd-default-ibc-{m}.service.d/slow.conf")
        dropin.parent.mkdir(parents=True)
        dropin.write_text("[Service]\nExecStopPost=/bin/sleep 1\n", encoding="utf-8")
    box.run("systemctl", "daemon-reload")
    stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", settings | {"READ_ONLY_API": "yes"})
    box.run("systemctl", "reload", UNIT, timeout=120)  # returns once the reload's jobs ran
    for m in logs:
        assert stack.show(box, f"ibgwd-default-ibc-{m}.service", "MainPID") not in ("0", ibc[m])
        assert "ReadOnlyApi=yes" in box.path(f"/run/ibgwd/default/ibc/config-{m}.ini").read_text()
    text = lambda: stack.show(box, UNIT, "StatusText")  # noqa: E731
    stack.wait_for(lambda: text().count(": ready") == 2, 60, "both gateways ready again")
    stack.wait_for(
        lambda: all(stack.show(box, r, "ActiveState") == "active" for r in relays), 30, "relays"
    )
    time.sleep(3)  # a spurious recovery would show within the next probes
    assert (starts("live"), starts("paper")) == (2, 2)  # each restarted exactly once
    journal = box.journal(UNIT)
    for bad in ("Traceback", "KeyError", "callback_failed", "action=restart_ibc_unit"):
        assert bad not in journal, bad
    assert "event=reloaded changed=ibc-live,ibc-paper" in journal
    for port in (4003, 4004):
        assert stack.ib_async_client(box, port).ok


def test_restart_with_a_mode_switched_off_stops_its_units_and_converges_the_rest(
    box: Box,
) -> None:
    """Convergence on start: TRADING_MODE both -> paper across a restart of ibgwd. The live
    gateway's units no longer belong and are stopped; the display is adopted; the paper gateway
    now has another settings directory (its spec differs), so it is replaced, and its relay is
    not adopted in front of a Gateway that logs in again (clients are refused meanwhile)."""
    settings = stack.base_settings() | {"TRADING_MODE": "both"}
    stack.install(box, settings)
    stack.start(box)
    paper_relay = "ibgwd-default-relay-paper.service"
    live = ("ibgwd-default-ibc-live.service", "ibgwd-default-relay-live.service")
    stack.wait_for(
        lambda: all(stack.show(box, u, "ActiveState") == "active" for u in (paper_relay, *live)),
        30,
        "both relays",
    )
    display = stack.show(box, CHILDREN[0], "MainPID")
    relay = stack.show(box, paper_relay, "MainPID")
    stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", settings | {"TRADING_MODE": "paper"})
    box.run("systemctl", "restart", UNIT, timeout=120)
    stack.wait_for(lambda: ready(box), 60, "ready in paper mode")
    for unit in live:
        assert stack.show(box, unit, "ActiveState") in ("inactive", ""), unit
    assert stack.show(box, CHILDREN[0], "MainPID") == display
    stack.wait_for(lambda: stack.show(box, paper_relay, "ActiveState") == "active", 30, "relay")
    assert stack.show(box, paper_relay, "MainPID") != relay
    journal = box.journal(UNIT)
    assert "event=leftover_unit unit=ibgwd-default-ibc-live.service action=stop" in journal
    assert "event=unit_differs unit=ibgwd-default-ibc-paper.service action=replace" in journal
    assert f"event=leftover_unit unit={paper_relay} action=stop" in journal
    assert stack.ib_async_client(box, RELAY_PORT).ok
