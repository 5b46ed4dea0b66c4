"""Helpers of the lifecycle system tests: the simulated clock, sim events, D-Bus, a held client."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import stack
from harness import Box

UNIT = "ibgwd.service"
IBC = "ibgwd-default-ibc-paper.service"
SETTINGS = "/var/lib/ibgwd/default/settings"
EVENTS = f"{SETTINGS}/sim-events.log"
DEST = "org.ibgwd.Gateway1.default"
OBJECT = "/org/ibgwd/Gateway1"
IFACE = "org.ibgwd.Gateway1.Manager"
HOLDER_LOG = "/var/tmp/holder.log"

# A client that holds a connection through the relay and reconnects whenever it drops, as a
# trading program would; one JSON line per connect / disconnect.
HOLDER = r"""
import json, sys, time, traceback
from ib_async import IB
port, path = int(sys.argv[1]), sys.argv[2]
def say(event, **kw):
    with open(path, "a") as f:
        f.write(json.dumps({"t": time.time(), "event": event, **kw}) + "\n")
ib = IB()
while True:
    try:
        ib.connect("127.0.0.1", port, clientId=11, timeout=3)
    except Exception:
        ib.disconnect()
        time.sleep(0.2)
        continue
    say("connected")
    try:
        while ib.isConnected():
            ib.sleep(0.1)
    except Exception as e:
        say("error", error=repr(e))
    ib.disconnect()
    say("disconnected")
"""


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def sim_clock(time_of_day: str, weekday: str) -> dict[str, str]:
    """simulation.conf keys that make a Gateway started now see `weekday time_of_day` (UTC,
    the Gateway's TZ) of next week: the way to compress a week into minutes. Computed from the
    present moment, so call it right before the Gateway (re)starts; days of one week come in
    order (next week's Monday .. Sunday)."""
    now = dt.datetime.now(dt.UTC)
    monday = (now + dt.timedelta(days=7 - now.weekday())).date()
    day = monday + dt.timedelta(days=WEEKDAYS.index(weekday))
    h, m, s = (int(x) for x in time_of_day.split(":"))
    target = dt.datetime(day.year, day.month, day.day, h, m, s, tzinfo=dt.UTC)
    return {"ClockOffsetSeconds": f"{(target - now).total_seconds():.0f}"}


def events(box: Box) -> list[str]:
    try:
        return box.path(EVENTS).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def count(box: Box, event: str) -> int:
    return sum(1 for line in events(box) if f" event={event}" in line)


def ibc_journal(box: Box) -> str:
    return box.run("journalctl", "-u", IBC, "--no-pager", "-o", "cat", check=False).stdout


def full_logins(box: Box) -> int:
    """Logins where IBC filled the login dialog (each costs a 2FA on a live account)."""
    n = count(box, "login_attempt")
    if n:
        return n
    # IBC's own line for every login it types (AbstractLoginHandler.java:83).
    return sum(1 for line in ibc_journal(box).splitlines() if " IBC: Login attempt: " in line)


def busctl(box: Box, *args: str) -> subprocess.CompletedProcess[str]:
    return box.run("busctl", "--no-pager", *args, check=False, timeout=60)


def call(box: Box, method: str, *args: str) -> subprocess.CompletedProcess[str]:
    return busctl(box, "call", DEST, OBJECT, IFACE, method, *args)


def properties(box: Box) -> dict[str, Any]:
    r = busctl(
        box,
        "--json=short",
        "call",
        DEST,
        OBJECT,
        "org.freedesktop.DBus.Properties",
        "GetAll",
        "s",
        IFACE,
    )
    assert r.returncode == 0, r.stderr
    return {k: v["data"] for k, v in json.loads(r.stdout)["data"][0].items()}


def state(box: Box) -> str:
    """The D-Bus State property; "" while ibgwd is not (yet) on the bus."""
    r = busctl(box, "--json=short", "get-property", DEST, OBJECT, IFACE, "State")
    return str(json.loads(r.stdout)["data"]) if r.returncode == 0 else ""


def status_text(box: Box) -> str:
    return stack.show(box, UNIT, "StatusText")


def recoveries(box: Box) -> dict[str, float]:
    out = {}
    for line in stack.metrics(box).splitlines():
        if line.startswith("ibgwd_recoveries_total{"):
            labels, value = line.rsplit(" ", 1)
            out[labels] = float(value)
    return out


def metric(box: Box, prefix: str) -> float | None:
    for line in stack.metrics(box).splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


@contextmanager
def held_client(box: Box, port: int = 4004) -> Iterator[list[dict[str, Any]]]:
    """Run HOLDER in the box; yields its log (re-read on each access via `holder_log`)."""
    script = box.path("/var/tmp/holder.py")
    script.write_text(HOLDER, encoding="utf-8")
    venv_site = next((stack.REPO / ".venv" / "lib").glob("python3*/site-packages"))
    process = subprocess.Popen(
        box.command("/usr/bin/python3", "/var/tmp/holder.py", str(port), HOLDER_LOG),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=box.environment(env={"PYTHONPATH": str(venv_site)}),
        start_new_session=True,
    )
    try:
        yield []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def holder_log(box: Box) -> list[dict[str, Any]]:
    try:
        text = box.path(HOLDER_LOG).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def connects(box: Box) -> int:
    return sum(1 for e in holder_log(box) if e["event"] == "connected")


def outages(box: Box) -> list[float]:
    """Seconds between each disconnect of the held client and its next connect."""
    out, down = [], None
    for e in holder_log(box):
        if e["event"] == "disconnected":
            down = e["t"]
        elif e["event"] == "connected" and down is not None:
            out.append(e["t"] - down)
            down = None
    return out


def gateway_outages(box: Box) -> list[float]:
    """Seconds the simulated Gateway's own API was closed, per restart (api_closed -> open)."""
    out, down = [], None
    for line in events(box):
        t, _, rest = line.partition(" ")
        if rest.startswith("event=api_closed"):
            down = float(t)
        elif rest.startswith("event=api_open") and down is not None:
            out.append(float(t) - down)
            down = None
    return out


def wait_count(box: Box, event: str, n: int, timeout: float, what: str) -> None:
    stack.wait_for(lambda: count(box, event) >= n, timeout, what, interval=0.1)


def wait_connects(box: Box, n: int, timeout: float, what: str) -> None:
    stack.wait_for(lambda: connects(box) >= n, timeout, what, interval=0.2)


def now() -> float:
    return time.monotonic()


def dump(box: Box) -> str:
    """What a failing lifecycle test prints: ibgwd's and IBC's journals, sim events, client."""
    ibgwd = box.run("journalctl", "-u", UNIT, "--no-pager", "-o", "short-precise", check=False)
    return (
        "---- ibgwd journal\n"
        + ibgwd.stdout[-6000:]
        + "\n---- IBC journal\n"
        + ibc_journal(box)[-5000:]
        + "\n---- sim events\n"
        + "\n".join(events(box)[-60:])
        + "\n---- held client\n"
        + json.dumps(holder_log(box)[-20:])
    )
