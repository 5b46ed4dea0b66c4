"""Hook directories run at the old image's points; TRADING_MODE=both supervises two gateways."""

from __future__ import annotations

import subprocess
import time

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

STATE = "/var/lib/ibgwd/default"
LOG = f"{STATE}/home/hooks.log"

# Each hook says what it saw either way, so a hook run too early shows as such, not as a timeout.
# IBC_SCRIPTS run once IBC was launched: the IBC unit is Type=exec, so its start job (which
# ibgwd waits for) ends only once ibcstart.sh was exec'd. "ibcstart" matches the launcher from
# that exec on (/bin/sh .../scripts/ibcstart.sh, then the simulator's python -m
# ibgwd_sim.ibcstart). The pattern used before, ibgwd_sim.ibcstart, matched only after the
# launcher's second exec, and under Type=simple the job ended at fork, before any exec: on a
# fresh (cold-cache) machine the hook could look before the launcher existed.
HOOKS = {
    "start": 'pgrep -x Xvfb >/dev/null && echo "start: display up" || echo "start: no display"',
    "x": 'xdpyinfo -display "$DISPLAY" >/dev/null && echo "x: display answers" || echo "x: no X"',
    "ibc": 'pgrep -f ibcstart >/dev/null && echo "ibc: IBC launched" || echo "ibc: no IBC"',
}


def test_hook_scripts_run_in_order_at_their_points_and_failures_do_not_stop_startup(
    box: Box,
) -> None:
    for stage, body in HOOKS.items():
        d = box.path(f"{STATE}/hooks/{stage}")
        d.mkdir(parents=True)
        (d / "10-fail.sh").write_text("echo failing >&2; exit 3\n")
        (d / "20-report.sh").write_text(f'{{ {body}; }} >> {LOG}\necho "$(id -un)" >> {LOG}\n')
        box.run("chmod", "-R", "a+rX", f"{STATE}/hooks")
    settings = stack.base_settings() | {
        "START_SCRIPTS": "hooks/start",
        "X_SCRIPTS": "hooks/x",
        "IBC_SCRIPTS": "hooks/ibc",
    }
    stack.install(box, settings)
    stack.start(box)
    stack.wait_for(
        lambda: box.path(LOG).exists() and "ibc:" in box.path(LOG).read_text(), 30, "the IBC hook"
    )
    lines = box.path(LOG).read_text().splitlines()
    assert lines == [
        "start: no display",
        "ibgateway",
        "x: display answers",
        "ibgateway",
        "ibc: IBC launched",
        "ibgateway",
    ]
    journal = box.run("journalctl", "-t", "ibgwd-default-hook-start", "--no-pager").stdout
    assert "10-fail.sh failed with status 3" in journal


def test_ibc_hooks_wait_until_the_launcher_was_executed_even_when_its_setup_is_slow(
    box: Box,
) -> None:
    """The race behind a fresh-machine failure of the test above, made deterministic: systemd
    sets up the IBC unit's main process (sandbox, stdin) between fork and exec. Here its stdin
    is a FIFO with no writer for 2 s, so that setup blocks; the hook must still see IBC."""
    ibc = f"{STATE}/hooks/ibc"
    box.path(ibc).mkdir(parents=True)
    box.path(f"{ibc}/20-report.sh").write_text(f"{{ {HOOKS['ibc']}; }} >> {LOG}\n")
    box.run("chmod", "-R", "a+rX", f"{STATE}/hooks")
    stack.install(box, stack.base_settings() | {"IBC_SCRIPTS": "hooks/ibc"})
    box.run("mkfifo", "-m", "0644", "/run/slow-stdin")
    dropin = box.path("/etc/systemd/system/ibgwd-default-ibc-paper.service.d/slow.conf")
    dropin.parent.mkdir(parents=True)
    # ExecStartPre= emptied: it would block on the FIFO first (stdin is per unit)
    dropin.write_text("[Service]\nExecStartPre=\nStandardInput=file:/run/slow-stdin\n")
    box.run("systemctl", "daemon-reload")
    writer = subprocess.Popen(
        box.command("sh", "-c", "sleep 2; exec 3>/run/slow-stdin; sleep 120"),
        env=box.environment(),
    )
    try:
        stack.start(box)
        stack.wait_for(lambda: box.path(LOG).exists(), 30, "the IBC hook")
        assert box.path(LOG).read_text().splitlines() == ["ibc: IBC launched"]
    finally:
        writer.kill()
        writer.wait()


def test_both_modes_run_side_by_side_and_one_dying_does_not_hide_behind_the_other(
    box: Box,
) -> None:
    stack.install(box, stack.base_settings() | {"TRADING_MODE": "both"})
    stack.start(box)
    text = stack.show(box, "ibgwd.service", "StatusText")
    assert text == (
        "live: ready: API live on 4001, relay on 4003; "
        "paper: ready: API live on 4002, relay on 4004"
    )
    for port in (4003, 4004):
        result = stack.ib_async_client(box, port)
        assert result.ok, result.output
    live = "ibgwd-default-ibc-live.service"
    pid = stack.show(box, live, "MainPID")
    box.run("kill", "-9", pid)
    stack.wait_for(
        lambda: (
            stack.show(box, "ibgwd.service", "StatusText").startswith("live: recovering")
            or "live: waiting" in stack.show(box, "ibgwd.service", "StatusText")
        ),
        30,
        "the live gateway's failure to show",
    )
    assert "paper: ready" in stack.show(box, "ibgwd.service", "StatusText")
    assert 'ibgwd_api_up{mode="paper"} 1.0' in stack.metrics(box)
    stack.wait_for(
        lambda: stack.show(box, "ibgwd.service", "StatusText").startswith("live: ready"),
        60,
        "the live gateway to recover",
    )
    assert stack.ib_async_client(box, 4003).ok


def test_waiting_for_2fa_shows_in_status_and_extends_the_start_timeout(box: Box) -> None:
    stack.install(
        box, stack.base_settings() | {"LOGIN_TIMEOUT": "120"}, sim={"TwoFactorFor": "paper"}
    )
    dropin = box.path("/etc/systemd/system/ibgwd.service.d/timeout.conf")
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nTimeoutStartSec=4s\n")
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "start", "--no-block", "ibgwd.service")
    status = lambda: stack.show(box, "ibgwd.service", "StatusText")  # noqa: E731
    # "waiting for 2FA approval, 2 min 58 s left": the prompt's deadline is shown
    stack.wait_for(lambda: status().startswith("waiting for 2FA approval, "), 30, "the 2FA prompt")
    time.sleep(8)  # twice TimeoutStartSec: only EXTEND_TIMEOUT_USEC keeps the start job alive
    assert stack.show(box, "ibgwd.service", "ActiveState") == "activating"
    assert status().startswith("waiting for 2FA approval, ") and status().endswith(" s left")
    box.path(f"{STATE}/settings/sim-approve-2fa").touch()
    stack.wait_for(lambda: stack.show(box, "ibgwd.service", "ActiveState") == "active", 30, "READY")
    assert status().startswith("ready")
    assert stack.ib_async_client(box, 4004).ok
