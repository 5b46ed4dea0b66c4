"""Test harness for the D-Bus facade: a private system-like dbus-daemon, the fake daemon,
throwaway users, and a `busctl` runner. Everything started here is stopped on exit."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import secrets
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
POLICY_FILE = REPO / "dbus" / "org.ibgwd.Gateway1.conf"
PYTHON = "/usr/bin/python3"  # Debian's python (dasbus, gi); readable by every test user


@functools.cache
def public_src() -> Path:
    """A world-readable copy of the code non-root test users run: the checkout's parent
    directories may be private (a CI clone in a 0700 temp dir)."""
    root = Path(tempfile.mkdtemp(prefix="ibgwd-test-src-", dir="/var/tmp"))
    shutil.copytree(REPO / "ibgwd", root / "ibgwd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(Path(__file__).resolve().parent / "fake_daemon.py", root / "fake_daemon.py")
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    atexit.register(shutil.rmtree, root, True)
    return root


START_TIMEOUT_S = 20.0
CALL_TIMEOUT_S = 20.0

# The defaults of Debian's /usr/share/dbus-1/system.conf (no activation, no <user>, no fork),
# then our policy file, as /usr/share/dbus-1/system.d/ would include it.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"""


@dataclass(frozen=True)
class PrivateBus:
    address: str
    directory: Path


def policy_for_group(directory: Path, group: str) -> Path:
    """The shipped policy with its admin group renamed (throwaway groups keep tests parallel)."""
    text = POLICY_FILE.read_text()
    assert 'group="ibgwd"' in text
    path = directory / "policy.conf"
    path.write_text(text.replace('group="ibgwd"', f'group="{group}"'))
    return path


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        raise TimeoutError(f"no output from {proc.args!r} within {timeout_s}s")
    return proc.stdout.readline()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def private_bus(admin_group: str = "ibgwd") -> Iterator[PrivateBus]:
    """A system-like dbus-daemon on a unix socket in a fresh temp dir others may enter."""
    directory = Path(tempfile.mkdtemp(prefix="ibgwd-dbus-"))
    try:
        directory.chmod(0o755)  # non-root test users must reach the socket
        policy = policy_for_group(directory, admin_group) if admin_group != "ibgwd" else POLICY_FILE
        config = directory / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=directory / "bus", policy=policy))
        proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            address = _read_line(proc, START_TIMEOUT_S).strip()
            assert address.startswith("unix:"), address
            yield PrivateBus(address=address, directory=directory)
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class FakeDaemon:
    proc: subprocess.Popen[str]
    instance: str
    bus_name: str
    config: Path
    calls: Path

    def recorded_calls(self) -> list[dict[str, object]]:
        import json

        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines()]


def fake_daemon_command(address: str, instance: str, *extra: str) -> list[str]:
    return [
        PYTHON,
        str(public_src() / "fake_daemon.py"),
        "--address",
        address,
        "--instance",
        instance,
        *extra,
    ]


@contextlib.contextmanager
def fake_daemon(
    bus: PrivateBus, instance: str = "test", admin_group: str = "ibgwd", trading_mode: str = "paper"
) -> Iterator[FakeDaemon]:
    """The fake ibgwd on `bus`, owning org.ibgwd.Gateway1.<instance>."""
    config = bus.directory / f"{instance}.conf"
    config.write_text(f"TRADING_MODE={trading_mode}\nVNC_PASSWORD=first-secret\n")
    calls = bus.directory / f"{instance}.calls"
    command = fake_daemon_command(
        bus.address,
        instance,
        "--config",
        str(config),
        "--calls",
        str(calls),
        "--admin-group",
        admin_group,
    )
    env = {**os.environ, "PYTHONPATH": str(public_src())}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = _read_line(proc, START_TIMEOUT_S)
        assert line.startswith("READY "), f"fake daemon did not start: {line!r}"
        yield FakeDaemon(proc, instance, line.split()[1], config, calls)
    finally:
        _stop(proc)


def as_user(user: str | None, command: Sequence[str]) -> list[str]:
    """Prefix a command so it runs as `user` with that user's groups (None = as root)."""
    if user is None:
        return list(command)
    return ["setpriv", f"--reuid={user}", f"--regid={user_gid(user)}", "--init-groups", *command]


def user_gid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def busctl(
    bus: PrivateBus, *args: str, user: str | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    command = as_user(user, ["busctl", f"--address={bus.address}", "--no-pager", *args])
    return subprocess.run(
        command, capture_output=True, text=True, timeout=CALL_TIMEOUT_S, check=check
    )


def _retry(command: list[str]) -> None:
    """useradd/groupadd fail when another process holds /etc/passwd's lock; retry briefly."""
    for attempt in range(20):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode == 0:
            return
        if "lock" not in result.stderr or attempt == 19:
            raise RuntimeError(f"{command!r} failed: {result.stderr.strip()}")
        time.sleep(0.25)


@dataclass(frozen=True)
class Accounts:
    group: str  # the throwaway admin group
    supplementary_member: str  # in the group through /etc/group
    primary_member: str  # the group is its primary group
    outsider: str  # in neither


@contextlib.contextmanager
def throwaway_accounts() -> Iterator[Accounts]:
    """Create a group and three users with random names; remove them afterwards."""
    tag = secrets.token_hex(3)
    accounts = Accounts(
        group=f"ibgt{tag}",
        supplementary_member=f"ibgs{tag}",
        primary_member=f"ibgp{tag}",
        outsider=f"ibgo{tag}",
    )
    created_users: list[str] = []
    created_group = False
    nologin = ["-M", "-s", "/usr/sbin/nologin"]
    try:
        _retry(["groupadd", accounts.group])
        created_group = True
        for user, opts in (
            (accounts.supplementary_member, ["-N", "-g", "nogroup", "-G", accounts.group]),
            (accounts.primary_member, ["-g", accounts.group]),
            (accounts.outsider, ["-N", "-g", "nogroup"]),
        ):
            _retry(["useradd", *nologin, *opts, user])
            created_users.append(user)
        yield accounts
    finally:
        for user in created_users:
            _retry(["userdel", user])
        if created_group:
            _retry(["groupdel", accounts.group])
