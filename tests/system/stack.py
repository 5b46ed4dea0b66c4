"""Install ibgwd from this working tree, plus the simulated gateway, into a systemd test box.

The box's root is an overlay over the host's `/`, so the repository and Debian's python3-*
packages are already visible inside; this only adds what a package install would add: the
`ibgwd` command, unit files, the D-Bus policy, the sysusers entries and a config file.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
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


LEAKSCAN = "/usr/local/lib/ibgwd-test/leakscan.py"
LEAKSCAN_RUN = "/run/leakscan"  # root-only: the forms the sampler looks for, and its result
LEAKSCAN_UNIT = "leakscan-sampler.service"
# Where a world-readable copy of a secret must not be (IBC writes into the gateway user's home,
# which is under /var/lib/ibgwd; it is added from passwd in case it moves).
FILE_ROOTS = ("/etc", "/run", "/var", "/tmp", "/dev/shm")
JAVA_SPECIAL = "\\=:#!"


def secret_forms(secret: str) -> list[bytes]:
    """The byte strings that give a secret away: the raw value (UTF-8 and, where it fits,
    ISO-8859-1) and every way a java.util.Properties file (IBC's config.ini) can spell it:
    specials `\\ = : # !` escaped, spaces escaped or not, non-ASCII as UTF-8, ISO-8859-1 or
    \\uXXXX in either case. Also the longest run without such characters (at least 6 long),
    which a value truncated or quoted differently still shows."""
    forms = {secret.encode()}
    with contextlib.suppress(UnicodeEncodeError):
        forms.add(secret.encode("latin-1"))
    for space in (" ", "\\ "):
        for non_ascii in ("utf-8", "latin-1", "u", "U"):
            out = b""
            for ch in secret:
                if ch in JAVA_SPECIAL:
                    out += b"\\" + ch.encode()
                elif ch == " ":
                    out += space.encode()
                elif ord(ch) < 128 or non_ascii == "utf-8":
                    out += ch.encode()
                elif non_ascii == "latin-1" and ord(ch) < 256:
                    out += ch.encode("latin-1")
                else:
                    units = ch.encode("utf-16-be", "surrogatepass")
                    for i in range(0, len(units), 2):
                        code = f"{int.from_bytes(units[i : i + 2], 'big'):04x}"
                        out += ("\\u" + (code.upper() if non_ascii == "U" else code)).encode()
            forms.add(out)
    runs = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else " " for c in secret)
    longest = max(runs.split(), key=len, default="")
    if len(longest) >= 6:
        forms.add(longest.encode())
    return sorted(forms)


def _forms_text(secrets: list[str]) -> str:
    return "".join(f"{form.hex()}\n" for s in secrets for form in secret_forms(s))


def _install_leakscan(box: Box) -> None:
    if not box.path(LEAKSCAN).exists():
        box.copy_in(Path(__file__).with_name("leakscan.py"), LEAKSCAN)
        box.run("chmod", "-R", "a+rX", str(Path(LEAKSCAN).parent))


class SecretWatch:
    """Samples every process's argv and environment in the box, continuously, from creation
    (before `systemctl start`) until `assert_no_secret_leaks` stops it (after READY): hooks,
    ExecStartPre scripts and other short-lived children are seen too, not one snapshot."""

    def __init__(self, box: Box, secrets: list[str]) -> None:
        self.box = box
        self.secrets = secrets
        _install_leakscan(box)
        run = box.path(LEAKSCAN_RUN)
        run.mkdir(mode=0o700, exist_ok=True)
        forms = run / "forms"
        forms.touch(mode=0o600)
        forms.write_text(_forms_text(secrets))
        box.run(
            "systemd-run",
            f"--unit={LEAKSCAN_UNIT}",
            "--service-type=exec",
            "/usr/bin/python3",
            LEAKSCAN,
            "sample",
            f"{LEAKSCAN_RUN}/forms",
            f"{LEAKSCAN_RUN}/result.json",
        )
        # the first sweep is done once the sampler has read /proc at least once
        time.sleep(0.2)

    def stop(self) -> dict[str, object]:
        self.box.run("systemctl", "stop", LEAKSCAN_UNIT)
        result = self.box.path(f"{LEAKSCAN_RUN}/result.json")
        wait_for(result.exists, 10, "the secret sampler's result")
        data: dict[str, object] = json.loads(result.read_text())
        return data


def assert_no_secret_leaks(box: Box, secrets: list[str], watch: SecretWatch | None = None) -> None:
    """No secret, raw or escaped (secret_forms), in any process's argv or environment (sampled
    continuously since `watch` began, and now), unit property, the journal (every field, binary
    ones too), /metrics, or a file under FILE_ROOTS or the gateway user's home that an
    unprivileged user can read."""
    problems: list[str] = []
    if watch is not None:
        sampled = watch.stop()
        if sampled["leaks"] or sampled["unreadable"] or not sampled["sweeps"]:
            problems.append(f"processes sampled since the start: {sampled}")
    _install_leakscan(box)
    forms = _forms_text(secrets)
    now = json.loads(
        box.run("/usr/bin/python3", LEAKSCAN, "proc", "/dev/stdin", input=forms).stdout
    )
    if now["leaks"] or now["unreadable"]:
        problems.append(f"processes now: {now}")
    roots = list(FILE_ROOTS)
    home = box.run("getent", "passwd", "ibgateway", check=False).stdout.split(":")
    if len(home) > 5 and home[5]:
        roots.append(home[5])
    found = json.loads(
        box.run(
            "/usr/bin/python3", LEAKSCAN, "files", *roots, user="nobody", input=forms, timeout=120
        ).stdout
    )
    if found["leaks"] or not found["scanned"]:
        problems.append(f"world-readable files: {found}")
    units = box.run("systemctl", "list-units", "--all", "--plain", "--no-legend", "ibgwd*")
    shown = box.run("systemctl", "show", *[u.split()[0] for u in units.stdout.splitlines()])
    journal = subprocess.run(
        box.command("journalctl", "-b", "--no-pager", "-o", "export"),
        env=box.environment(),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    scraped = metrics(box)
    for i, secret in enumerate(secrets):
        for form in secret_forms(secret):
            where = [
                name
                for name, text in (
                    ("unit properties", shown.stdout.encode()),
                    ("journal", journal),
                    ("/metrics", scraped.encode()),
                )
                if form in text
            ]
            if where:
                problems.append(f"secret #{i} (form {len(form)} bytes) in {', '.join(where)}")
    assert not problems, "\n".join(problems)
