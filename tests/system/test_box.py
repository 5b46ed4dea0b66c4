"""System tests of the box harness: real systemd boots, is isolated, and leaves no trace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from dasbus.connection import AddressedMessageBus
from harness import Box, BoxError, gc
from harness.box import STATE_ROOT, cgroup_base

pytestmark = pytest.mark.system

BoxFactory = Callable[..., Box]
SYSTEMD = "org.freedesktop.systemd1"
TESTS_DIR = Path(__file__).resolve().parents[1]


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def unit_property(box: Box, unit: str, prop: str) -> str:
    return box.run("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()


def host_traces(name: str) -> list[str]:
    """Everything of box ``name`` still on the host: cgroup, state dir, mounts, processes."""
    tag = f"ibgwd-box-{name}"
    found = []
    cg = cgroup_base() / tag
    if cg.exists():
        found.append(f"cgroup dir {cg}")
    if (STATE_ROOT / name).exists():
        found.append(f"state dir {STATE_ROOT / name}")
    found += [
        f"mount: {line}"
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if tag in line or str(STATE_ROOT / name) in line
    ]
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"/{tag}" in (proc / "cgroup").read_text():
                stat = (proc / "stat").read_text()
                if stat[stat.rindex(")") + 2] != "Z":  # a zombie holds nothing but its pid
                    found.append(f"process {proc.name}: {(proc / 'cmdline').read_bytes()!r}")
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def test_transient_unit_state_is_readable_over_the_box_bus_from_the_host(box: Box) -> None:
    box.run("systemd-run", "--unit=harness-probe", "--quiet", "sleep", "infinity")
    bus = AddressedMessageBus(box.bus_address)
    try:
        manager = bus.get_proxy(SYSTEMD, "/org/freedesktop/systemd1")
        unit = bus.get_proxy(SYSTEMD, manager.GetUnit("harness-probe.service"))
        assert unit.ActiveState == "active"
        assert unit.SubState == "running"

        box.run("systemctl", "stop", "harness-probe.service")

        def stopped() -> bool:
            try:
                return bool(
                    bus.get_proxy(SYSTEMD, manager.GetUnit("harness-probe.service")).ActiveState
                    != "active"
                )
            except Exception:  # NoSuchUnit: the transient unit was garbage-collected
                return True

        wait_for("harness-probe to stop, seen over the bus", stopped)
    finally:
        bus.disconnect()


def test_stopped_box_leaves_nothing_on_the_host(box_factory: BoxFactory) -> None:
    box = box_factory()
    box.run("systemd-run", "--unit=straggler", "--quiet", "sleep", "infinity")
    assert host_traces(box.name), "the check must see a running box"
    box.stop()
    assert host_traces(box.name) == []
    box.stop()  # idempotent


def test_gc_after_launcher_sigkill_leaves_nothing_on_the_host(box_factory: BoxFactory) -> None:
    box = box_factory()
    assert box.launcher_pid is not None
    os.kill(box.launcher_pid, signal.SIGKILL)
    wait_for("systemd to die with its launcher", lambda: not Path(f"/proc/{box.pid}/exe").exists())
    gc()  # (a concurrent test session's gc may have got there first)
    assert host_traces(box.name) == []


OWNER_SCRIPT = """
import sys, time
sys.path.insert(0, sys.argv[1])
from harness import Box
box = Box.start()
print(box.name, box.launcher_pid, flush=True)
time.sleep(3600)
"""


def test_gc_after_test_runner_sigkill_leaves_nothing_on_the_host(as_root: None) -> None:
    runner = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(TESTS_DIR)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert runner.stdout is not None
        name, launcher = runner.stdout.readline().split()
        assert host_traces(name)
    finally:
        runner.kill()
        runner.wait()
    # pdeathsig takes the launcher down with its runner; gc removes what is left.
    wait_for("the launcher to die with the runner", lambda: not Path(f"/proc/{launcher}").exists())
    gc()
    assert host_traces(name) == []


def test_gc_leaves_a_live_box_of_another_runner_alone(box: Box) -> None:
    assert box.name not in gc()
    assert box.run("systemctl", "is-system-running").stdout.strip() in ("running", "degraded")


def test_file_written_inside_the_box_does_not_reach_the_host(box: Box) -> None:
    marker = f"ibgwd-box-probe-{uuid.uuid4().hex}"
    repo_file = Path(__file__).resolve().parents[2] / marker
    for path in (f"/etc/{marker}", f"/usr/local/bin/{marker}", str(repo_file)):
        # The repository may be bound read-only (a checkout under /tmp): then the write fails,
        # which equally keeps it off the host.
        written = box.run("sh", "-c", f'echo inside > "{path}"', check=path != str(repo_file))
        if written.returncode == 0:
            assert box.path(path).read_text() == "inside\n"
        assert not Path(path).exists(), f"{path} leaked to the host"


def test_copy_in_puts_a_file_into_the_box_only(box: Box, tmp_path: Path) -> None:
    src = tmp_path / "payload.txt"
    src.write_text("payload\n")
    box.copy_in(src, "/opt/harness/payload.txt")
    assert box.run("cat", "/opt/harness/payload.txt").stdout == "payload\n"
    assert not Path("/opt/harness/payload.txt").exists()


WATCHDOG_PROBE = """\
import os, time, sdnotify
hang = "/run/wd-probe/hang"
if os.path.exists(hang):
    os.unlink(hang)  # a restarted instance serves normally again
notifier = sdnotify.SystemdNotifier()
interval_s = int(os.environ["WATCHDOG_USEC"]) / 1e6 / 4
notifier.notify("READY=1\\nSTATUS=serving")
while not os.path.exists(hang):
    notifier.notify("WATCHDOG=1")
    time.sleep(interval_s)
time.sleep(3600)  # hung: no more pings
"""

WATCHDOG_UNIT = """\
[Service]
Type=notify
ExecStart=/usr/bin/python3 /usr/local/lib/wd-probe.py
WatchdogSec=2
Restart=on-watchdog
RestartSec=0.5
RuntimeDirectory=wd-probe
RuntimeDirectoryPreserve=yes
LimitCORE=0
"""


def test_watchdog_kills_and_restarts_a_notify_service_that_stops_pinging(box: Box) -> None:
    box.path("/usr/local/lib/wd-probe.py").write_text(WATCHDOG_PROBE)
    box.path("/etc/systemd/system/wd-probe.service").write_text(WATCHDOG_UNIT)
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", "wd-probe.service")  # returns after READY=1
    assert unit_property(box, "wd-probe.service", "ActiveState") == "active"
    assert unit_property(box, "wd-probe.service", "NRestarts") == "0"
    first_pid = unit_property(box, "wd-probe.service", "MainPID")

    box.run("touch", "/run/wd-probe/hang")

    def restarted() -> bool:
        return unit_property(box, "wd-probe.service", "NRestarts") != "0" and (
            unit_property(box, "wd-probe.service", "ActiveState") == "active"
        )

    wait_for("systemd to restart wd-probe", restarted)
    assert unit_property(box, "wd-probe.service", "NRestarts") == "1"
    assert unit_property(box, "wd-probe.service", "MainPID") not in (first_pid, "0")
    journal = box.journal("wd-probe.service")
    assert "Watchdog timeout" in journal
    assert f"Killing process {first_pid} (python3) with signal SIGABRT" in journal
    assert "Failed with result 'watchdog'" in journal


def test_units_the_host_enables_are_masked_inside(box: Box) -> None:
    enabled = sorted({p.name for p in Path("/etc/systemd/system").glob("*.wants/*")})
    if not enabled:
        pytest.skip("the host enables no units in /etc/systemd/system")
    for unit in enabled:
        assert unit_property(box, unit, "LoadState") == "masked", unit
        assert unit_property(box, unit, "ActiveState") == "inactive", unit


def test_unmask_keeps_a_host_enabled_unit_loadable(box_factory: BoxFactory) -> None:
    enabled = sorted({p.name for p in Path("/etc/systemd/system").glob("*.wants/*.service")})
    if not enabled:
        pytest.skip("the host enables no services in /etc/systemd/system")
    box = box_factory(unmask=[enabled[0]])
    assert unit_property(box, enabled[0], "LoadState") != "masked"


def test_journal_is_volatile(box: Box) -> None:
    machine_id = box.path("/etc/machine-id").read_text().strip()
    box.run("systemd-cat", "-t", "harness", "echo", "hello from the box")
    wait_for("the message in the journal", lambda: "hello from the box" in box.journal())
    assert box.path(f"/run/log/journal/{machine_id}").is_dir()
    assert not box.path(f"/var/log/journal/{machine_id}").exists()
    assert not Path(f"/var/log/journal/{machine_id}").exists()


def test_debugfs_and_tracefs_are_not_mounted(box: Box) -> None:
    fstypes = {
        line.split(" - ")[1].split()[0]
        for line in box.run("cat", "/proc/self/mountinfo").stdout.splitlines()
    }
    assert "overlay" in fstypes
    assert not fstypes & {"debugfs", "tracefs"}
    for unit in ("sys-kernel-debug.mount", "sys-kernel-tracing.mount"):
        assert unit_property(box, unit, "LoadState") == "masked"


def test_credentials_reach_the_service_because_the_root_is_rshared(box: Box) -> None:
    out = box.run(
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        "-p",
        "SetCredential=probe:secret-ish",
        "sh",
        "-c",
        'cat "$CREDENTIALS_DIRECTORY/probe"',
    ).stdout
    assert out == "secret-ish"


def test_boxes_run_in_parallel_each_on_its_own_network(box_factory: BoxFactory) -> None:
    boxes = [box_factory(), box_factory()]
    for b in boxes:  # the same port in both: each box has its own network namespace
        b.run(
            "systemd-run",
            "--unit=hello",
            "--quiet",
            "socat",
            "TCP-LISTEN:4004,bind=0.0.0.0,reuseaddr,fork",
            "SYSTEM:hostname",
        )
    for b in boxes:

        def answers(b: Box = b) -> bool:
            r = b.run("socat", "-T2", "-", "TCP:127.0.0.1:4004", check=False, input="")
            return r.stdout.strip() == b.name

        wait_for(f"the listener in {b.name}", answers)
    assert boxes[0].run("hostname").stdout.strip() != boxes[1].run("hostname").stdout.strip()


def test_run_as_user_gets_the_users_groups(box: Box) -> None:
    box.run("groupadd", "ibgwd-probe")
    box.run("useradd", "--create-home", "--groups", "ibgwd-probe", "bob")
    r = box.run("sh", "-c", 'id -un; id -Gn; echo "$HOME"', user="bob")
    name, groups, home = r.stdout.splitlines()
    assert name == "bob"
    assert "ibgwd-probe" in groups.split()
    assert home == "/home/bob"
    assert not Path("/home/bob").exists()


def test_failing_command_raises_with_its_output(box: Box) -> None:
    with pytest.raises(subprocess.CalledProcessError, match="no-such-file"):
        box.run("cat", "/no-such-file")
    assert box.run("false", check=False).returncode == 1


def test_lower_without_systemd_fails_clearly_and_leaves_nothing(
    as_root: None, tmp_path: Path
) -> None:
    name = f"empty-{os.getpid()}"
    with pytest.raises(BoxError, match="has no /lib/systemd/systemd"):
        Box.start(name, lower=tmp_path)
    assert host_traces(name) == []
