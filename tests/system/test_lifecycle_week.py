"""A week in a box: the Gateway's own restarts cost one full login a week and no recovery.

Time is compressed with the simulated Gateway's clock (ClockOffsetSeconds / ClockWeekday,
re-read at each Gateway start): each "night" the relaunched Gateway sees 23:44:45, 15 s before
its AutoRestartTime (ibgwd's default 11:45 PM, always given to IBC), and on "Sunday" 07:04:45,
before TWS_COLD_RESTART=07:05. IBC's behaviour followed by the simulator: the Gateway's
"Shutdown progress" dialog (TwsListener.logWindow), the command server closed during the
shutdown (ShutdownProgressDialogHandler), the token written just before exit (IBC#221) and
ibcstart.sh's relaunch loop (l.535-570); the Sunday StopTask(cold) (IbcTws.java:485-505).
"""

from __future__ import annotations

import re
import time

import lifecycle_kit as kit
import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

SIM = {"ShutdownSeconds": "2", "LoginSeconds": "1"}
NIGHT = "23:44:45"


def test_a_week_costs_two_full_logins_no_recovery_and_never_touches_the_ibc_unit(
    box: Box,
) -> None:
    try:
        week(box)
    except AssertionError:
        print(kit.dump(box))
        raise


def week(box: Box) -> None:
    settings = stack.base_settings() | {
        "TWS_COLD_RESTART": "07:05",
        "READ_ONLY_API": "no",
        "LOGIN_TIMEOUT": "60",
    }
    stack.install(box, settings, sim=SIM | kit.sim_clock("23:44:30", "thursday"))
    t0 = time.monotonic()
    stack.start(box)
    invocation = stack.show(box, kit.IBC, "InvocationID")
    assert invocation
    assert kit.full_logins(box) == 1
    props = kit.properties(box)
    assert props["NextRestart"]["paper"] > time.time()  # the daily restart is known
    assert props["NextFullLogin"]["paper"] > props["NextRestart"]["paper"] - 7 * 86400

    restarts = 0
    seen_texts: set[str] = set()
    with kit.held_client(box):
        kit.wait_connects(box, 1, 60, "the held client to connect through the relay")

        def gateway_restart(next_clock: tuple[str, str] | None, what: str) -> None:
            """Wait for the Gateway's own shutdown, set the clock its relaunch will see, and
            wait for the held client to be back."""
            nonlocal restarts
            kit.wait_count(box, "shutdown_started", restarts + 1, 120, f"the {what}")
            if next_clock is not None:
                stack.write_sim_conf(box, SIM | kit.sim_clock(*next_clock))
            restarts += 1
            back = restarts + 1

            def watching() -> bool:
                seen_texts.add(kit.status_text(box))
                return kit.connects(box) >= back

            stack.wait_for(watching, 120, f"the held client back after the {what}", 0.1)

        # Three nights (Thursday, Friday, Saturday): the Gateway's token restart.
        gateway_restart((NIGHT, "friday"), "Thursday night restart")
        gateway_restart((NIGHT, "saturday"), "Friday night restart")
        gateway_restart(("07:04:45", "sunday"), "Saturday night restart")
        assert kit.full_logins(box) == 1
        # Sunday: IBC's ColdRestartTime, a full login (the week's one 2FA on a live account).
        gateway_restart(("07:05:30", "sunday"), "Sunday cold restart")
        assert kit.full_logins(box) == 2
        # An admin's soft restart over D-Bus: IBC's RESTART, at the next (simulated) minute.
        stack.wait_for(lambda: kit.properties(box)["State"] == "ready", 60, "ready")
        r = kit.call(box, "Restart", "sb", "paper", "false")
        assert r.returncode == 0, r.stderr
        assert "soft restart at" in r.stdout
        gateway_restart(None, "soft restart")
        # IBC re-applies the configured AutoRestartTime at the login after the soft restart
        # (ConfigureAutoLogoffOrRestartTimeTask), so the daily restart is 11:45 PM again.
        reapplied = re.compile(r"Auto restart time changed from \d\d:\d\d [AP]M to 11:45 PM")

        def daily_time_back() -> bool:
            after = kit.ibc_journal(box).split("Setting auto-restart time to")[-1]
            return bool(reapplied.search(after))

        stack.wait_for(daily_time_back, 30, "IBC to put the daily restart time back")
        # A reload that changes nothing of IBC's restarts nothing of IBC's.
        stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", settings | {"PROBE_TIMEOUT": "0.5"})
        box.run("systemctl", "reload", kit.UNIT, timeout=120)
        stack.wait_for(lambda: kit.properties(box)["State"] == "ready", 60, "ready after reload")
        time.sleep(1)
        final_connects = kit.connects(box)

    took = time.monotonic() - t0
    outages = kit.outages(box)
    print(
        f"week in a box: {took:.0f} s wall, {restarts} Gateway restarts, full logins "
        f"{kit.full_logins(box)}, held-client outages {[round(x, 1) for x in outages]} s, "
        f"total API outage {sum(outages):.1f} s"
    )
    own = kit.gateway_outages(box)
    extra = [round(c - g, 2) for c, g in zip(outages, own, strict=False)]
    print(
        f"the Gateway's own API downtime per restart {[round(x, 1) for x in own]} s; the held "
        f"client's outage beyond it (ibgwd's relay restart + reconnect) {extra} s"
    )
    print(f"status texts seen while restarting: {sorted(seen_texts)}")
    assert "restarting (daily restart)" in seen_texts
    assert "restarting (cold restart)" in seen_texts
    assert "restarting (soft restart)" in seen_texts
    assert kit.full_logins(box) == 2
    assert final_connects == restarts + 1 and len(outages) == restarts
    # No recovery of any kind, and the IBC unit was never restarted or signalled by ibgwd.
    assert all(v == 0.0 for v in kit.recoveries(box).values()), kit.recoveries(box)
    assert stack.show(box, kit.IBC, "InvocationID") == invocation
    assert stack.show(box, kit.IBC, "NRestarts") == "0"
    assert kit.properties(box)["RestartCounts"].get("ibc-paper") == 0
    journal = box.run("journalctl", "-u", kit.UNIT, "--no-pager", "-o", "cat").stdout
    assert "action=restart_ibc_unit" not in journal and "action=soft_restart" not in journal
    assert "from=ready to=restarting" in journal
