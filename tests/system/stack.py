"""Install ibgwd from this working tree, plus the simulated gateway, into a systemd test box.

The box's root is an overlay over the host's `/`, so the repository and Debian's python3-*
packages are already visible inside; this only adds what a package install would add: the
`ibgwd` command, unit files, the D-Bus policy, the sysusers entries and a config file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness import Box

from ibgwd_sim.harness import TRICKY_PASSWORD as TRICKY_PASSWORD

REPO = Path(__file__).resolve().parents[2]
# A copy inside the box that every user can read, whatever the permissions of the checkout's
# parent directories (the sim runs as the unprivileged user ibgateway).
SRC = "/usr/local/lib/ibgwd-src"
SIM_PREFIX = "/opt/ibgwd-sim"
DEMO_USER = "demo"
# The test credential for the simulated gateway, which checks it (AcceptPassword): every
# character special to java.util.Properties, the conffile or simulation.conf, plus non-ASCII.
DEMO_PASSWORD = TRICKY_PASSWORD

WRAPPER = f"""#!/bin/sh
# ibgwd from the working tree {REPO} (installed by tests/system/stack.py)
PYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}}
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PYTHONDONTWRITEBYTECODE
exec /usr/bin/python3 -P -m ibgwd "$@"
"""


def base_settings() -> dict[str, str]:
    return {
        "TWS_USERID": DEMO_USER,
        "TWS_PASSWORD": TRICKY_PASSWORD,
        "TWS_USERID_PAPER": DEMO_USER,
        "TWS_PASSWORD_PAPER": TRICKY_PASSWORD,
        "TRADING_MODE": "paper",
        "IBC_PATH": f"{SIM_PREFIX}/ibc",
        "TWS_PATH": f"{SIM_PREFIX}/Jts",
        "PROBE_INTERVAL": "1",
        "PROBE_TIMEOUT": "1",
        "PROBE_FAILURES": "3",
        "LOGIN_TIMEOUT": "30",
        "RECOVERY_BACKOFF": "5",
    }


def write_conf(box: Box, path: str, values: Mapping[str, str]) -> None:
    text = "".join(f"{k}={_quote(v)}\n" for k, v in values.items())
    target = box.path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    target.chmod(0o600)


def _quote(value: str) -> str:
    if value and all(c.isalnum() or c in "/._-:" for c in value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def write_sim_conf(box: Box, values: Mapping[str, str]) -> None:
    """Switch the simulated gateway's scenario (read at each gateway start).

    The simulated gateway accepts only DEMO_USER / TRICKY_PASSWORD unless a test overrides
    AcceptPassword; a test that wants a wrong password sets TWS_PASSWORD itself.
    """
    defaults = {
        "Scenario": "ok",
        "StartupSeconds": "1",  # JVM launch -> login dialog (the real one takes seconds)
        "LoginSeconds": "1",
        "RestartDelaySeconds": "2",
        "ShutdownSeconds": "5",  # the Gateway's shutdown phase: low end of the observed 5-15 s
        "AcceptUser": DEMO_USER,
        "AcceptPassword": TRICKY_PASSWORD,
    }
    defaults.update(values)
    text = "".join(f"{k} = {v}\n" for k, v in defaults.items())
    box.path(f"{SIM_PREFIX}/ibc/simulation.conf").write_text(text, encoding="utf-8")


def install(box: Box, settings: Mapping[str, str], sim: Mapping[str, str] | None = None) -> None:
    for package in ("ibgwd", "ibgwd_sim"):
        box.copy_in(REPO / package, f"{SRC}/{package}")
    box.run("chmod", "-R", "a+rX", SRC)
    wrapper = box.path("/usr/bin/ibgwd")
    wrapper.write_text(WRAPPER, encoding="utf-8")
    wrapper.chmod(0o755)
    ctl = box.path("/usr/bin/ibgwdctl")
    ctl.write_text(WRAPPER.replace('-m ibgwd "$@"', '-m ibgwd ctl "$@"'), encoding="utf-8")
    ctl.chmod(0o755)
    for unit in ("ibgwd.service", "ibgwd@.service"):
        box.copy_in(REPO / "systemd" / unit, f"/etc/systemd/system/{unit}")
    box.copy_in(REPO / "systemd" / "ibgwd.sysusers", "/etc/sysusers.d/ibgwd.conf")
    box.copy_in(
        REPO / "dbus" / "org.ibgwd.Gateway1.conf", "/etc/dbus-1/system.d/org.ibgwd.Gateway1.conf"
    )
    box.run("systemd-sysusers")
    box.run(
        "/usr/bin/python3",
        "-P",
        "-m",
        "ibgwd_sim",
        "install",
        "--prefix",
        SIM_PREFIX,
        env={"PYTHONPATH": SRC},
    )
    write_sim_conf(box, sim or {})
    write_conf(box, "/etc/ibgwd/ibgwd.conf", settings)
    box.run("systemctl", "reload", "dbus")
    box.run("systemctl", "daemon-reload")


def start(box: Box, unit: str = "ibgwd.service", timeout: float = 120) -> None:
    r = box.run("systemctl", "start", unit, check=False, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(
            f"systemctl start {unit} failed ({r.returncode}): {r.stderr}\n"
            + box.run("journalctl", "-b", "--no-pager", "-n", "200", check=False).stdout
        )


def show(box: Box, unit: str, prop: str) -> str:
    return box.run("systemctl", "show", "-P", prop, unit).stdout.strip()


def metrics(box: Box, port: int = 9108) -> str:
    return box.run(
        "/usr/bin/python3",
        "-c",
        f"import urllib.request;print(urllib.request.urlopen("
        f"'http://127.0.0.1:{port}/metrics', timeout=5).read().decode())",
    ).stdout


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass(frozen=True)
class ClientResult:
    ok: bool
    output: str


CLIENT = """
import json, sys
from ib_async import IB
ib = IB()
try:
    ib.connect("127.0.0.1", int(sys.argv[1]), clientId=int(sys.argv[2]), timeout=float(sys.argv[3]))
    t = ib.reqCurrentTime()
    print(json.dumps({"ok": True, "time": t.isoformat(), "accounts": ib.managedAccounts()}))
    ib.disconnect()
except Exception as e:
    print(json.dumps({"ok": False, "error": type(e).__name__ + ": " + str(e)}))
"""


def ib_async_client(box: Box, port: int, client_id: int = 7, timeout: float = 10) -> ClientResult:
    """A real ib_async client, run inside the box (its network namespace)."""
    venv_site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    r = box.run(
        "/usr/bin/python3",
        "-c",
        CLIENT,
        str(port),
        str(client_id),
        str(timeout),
        env={"PYTHONPATH": str(venv_site)},
        check=False,
        timeout=timeout + 30,
    )
    line = (r.stdout.strip().splitlines() or ["{}"])[-1]
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return ClientResult(False, r.stdout + r.stderr)
    return ClientResult(bool(data.get("ok")), json.dumps(data))


def assert_no_secret_leaks(box: Box, secrets: list[str]) -> None:
    """No secret in any process's argv or environment, unit property, the journal or /metrics."""
    leaks = box.run(
        "/usr/bin/python3",
        "-c",
        "import os,sys\n"
        "secrets=[s.encode() for s in sys.stdin.read().splitlines()]\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    for f in ('cmdline','environ'):\n"
        "        try: data=open(f'/proc/{pid}/{f}','rb').read()\n"
        "        except OSError: continue\n"
        "        if any(s in data for s in secrets): print(pid, f)\n",
        input="\n".join(secrets),  # not argv: the scanner's own cmdline is scanned too
    ).stdout
    assert leaks == ""
    units = box.run("systemctl", "list-units", "--all", "--plain", "--no-legend", "ibgwd*")
    shown = box.run("systemctl", "show", *[u.split()[0] for u in units.stdout.splitlines()])
    journal = box.run("journalctl", "-b", "--no-pager", "-o", "verbose").stdout
    for secret in secrets:
        assert secret not in shown.stdout
        assert secret not in journal
        assert secret not in metrics(box)
