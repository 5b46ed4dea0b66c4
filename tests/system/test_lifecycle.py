"""IBC's real lifecycle under ibgwd: a wrong password, 2FA expiry and device selection, a stale
autorestart token, and reconnect before ready; each against the simulated gateway, which
follows IBC 3.24.1 (sources named per test)."""

from __future__ import annotations

import time

import lifecycle_kit as kit
import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

WRONG_PASSWORD = "wrong-Pa55word!"  # test credential, not the simulator's


def checked(box: Box, body: object) -> None:
    try:
        body()  # type: ignore[operator]
    except Exception:
        print(kit.dump(box))
        raise


def test_wrong_password_one_login_attempt_then_nothing_until_an_admin_reloads(box: Box) -> None:
    """LoginFailedDialogHandler.java:40-49: "Login failed", then StopTask(cold) — IBC's own
    loop would log in again and again (ibcstart.sh l.545-548); ibgwd ends it after one."""

    def body() -> None:
        # The usual paper setup: TWS_USERID / TWS_PASSWORD only, the password wrong.
        settings = {k: v for k, v in stack.base_settings().items() if not k.endswith("_PAPER")} | {
            "TWS_PASSWORD": WRONG_PASSWORD,
            "READ_ONLY_API": "no",
        }
        stack.install(box, settings)
        box.run("systemctl", "start", "--no-block", kit.UNIT)
        stack.wait_for(
            lambda: kit.count(box, "login_failed") >= 1, 60, "the failed login", interval=0.2
        )
        expected = "login failed: check TWS_USERID / TWS_PASSWORD for the paper gateway"
        stack.wait_for(lambda: kit.status_text(box) == expected, 30, "the login-failed state")
        time.sleep(20)  # IBC's own loop would have logged in several times by now
        assert kit.full_logins(box) == 1
        assert kit.count(box, "login_failed") == 1
        assert kit.status_text(box) == expected
        assert stack.show(box, kit.IBC, "ActiveState") in ("inactive", "failed", "")
        props = kit.properties(box)
        assert props["State"] == "login_failed" and props["GatewayStates"] == {
            "paper": "login_failed"
        }
        assert props["LoginFailures"] == {"paper": 1}
        metrics = stack.metrics(box)
        assert 'ibgwd_login_failures_total{mode="paper"} 1.0' in metrics
        assert 'ibgwd_gateway_state{mode="paper",state="login_failed"} 1.0' in metrics
        assert 'ibgwd_recoveries_total{kind="unit_restart",mode="paper"} 0.0' in metrics
        budget = box.path("/var/lib/ibgwd/default/recovery-budget.json").read_text()
        assert '"login_failures": 1' in budget
        stack.assert_no_secret_leaks(box, [WRONG_PASSWORD, stack.DEMO_PASSWORD])
        # The admin fixes the password and reloads: one more login, and it succeeds.
        stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", settings | stack.base_settings())
        r = box.run("systemctl", "reload", kit.UNIT, timeout=120, check=False)
        assert r.returncode == 0, r.stderr
        stack.wait_for(lambda: kit.state(box) == "ready", 60, "ready after reload")
        assert kit.full_logins(box) == 2

    checked(box, body)


def test_2fa_deadline_then_expiry_is_its_own_state_then_what_follows(box: Box) -> None:
    """LoginManager.java:105-150: the prompt closes after SecondFactorAuthenticationTimeout;
    with ReloginAfterSecondFactorAuthenticationTimeout=yes and the dialog gone early, IBC says
    "If login has not completed, IBC will exit in N seconds" (exit 87, ibcstart.sh l.560)."""

    def body() -> None:
        settings = stack.base_settings() | {
            "RELOGIN_AFTER_TWOFA_TIMEOUT": "yes",
            "TWOFA_EXIT_INTERVAL": "20",
            "LOGIN_TIMEOUT": "300",
        }
        sim = {"TwoFactorFor": "paper", "Scenario": "twofa_timeout", "TwoFactorDialogSeconds": "8"}
        stack.install(box, settings, sim=sim)
        box.run("systemctl", "start", "--no-block", kit.UNIT)
        stack.wait_for(
            lambda: kit.status_text(box).startswith("waiting for 2FA approval, "),
            60,
            "the 2FA deadline in the status",
        )
        text = kit.status_text(box)
        assert text.endswith(" left") and "min" in text, text
        deadline = kit.properties(box)["TwoFactorDeadline"]["paper"]
        assert 170 < deadline - time.time() <= 180
        assert (kit.metric(box, 'ibgwd_twofa_deadline_timestamp_seconds{mode="paper"}') or 0) > 0
        stack.wait_for(lambda: kit.state(box) == "expired_2fa", 30, "the expired 2FA state")
        text = kit.status_text(box)
        assert text.startswith("2FA prompt expired: ") and "IBC exits in 20 s" in text, text
        assert 'ibgwd_gateway_state{mode="paper",state="expired_2fa"} 1.0' in stack.metrics(box)
        assert kit.properties(box)["TwoFactorDeadline"]["paper"] == 0.0

    checked(box, body)


def test_2fa_device_selection_shows_as_such(box: Box) -> None:
    """SecondFactorAuthenticationDialogHandler.java:55-117: several devices and no
    SecondFactorDevice: IBC cannot choose, no "initiated" line; a human must pick one."""

    def body() -> None:
        stack.install(
            box,
            stack.base_settings(),
            sim={"TwoFactorFor": "paper", "SecondFactorDevices": "IB Key,Mobile SMS"},
        )
        box.run("systemctl", "start", "--no-block", kit.UNIT)
        stack.wait_for(lambda: kit.state(box) == "select_2fa_device", 60, "device selection")
        assert kit.status_text(box).startswith("waiting for the 2FA device to be chosen")
        assert "TWOFA_DEVICE" in kit.status_text(box)
        metrics = stack.metrics(box)
        assert 'ibgwd_gateway_state{mode="paper",state="select_2fa_device"} 1.0' in metrics

    checked(box, body)


def test_stale_autorestart_token_is_removed_and_one_full_login_follows(box: Box) -> None:
    """IBC#235: a leftover `<settings>/*/autorestart` makes IBC start with -Drestart and skip
    the login (AbstractLoginHandler.java:56-64): the Gateway would wait forever."""

    def body() -> None:
        stack.install(box, stack.base_settings() | {"LOGIN_TIMEOUT": "15"})
        token = box.path(f"{kit.SETTINGS}/staledir/autorestart")
        token.parent.mkdir(parents=True, exist_ok=True)
        token.write_text("left over from an earlier boot\n")
        box.run("chown", "-R", "ibgateway:", f"{kit.SETTINGS}")
        box.run("systemctl", "start", "--no-block", kit.UNIT)
        stack.wait_for(
            lambda: kit.count(box, "login_not_attempted") >= 1, 60, "the stalled relaunch"
        )
        stack.wait_for(lambda: kit.state(box) == "ready", 90, "ready")
        assert kit.full_logins(box) == 1
        assert not token.exists()
        journal = box.run("journalctl", "-u", kit.UNIT, "--no-pager", "-o", "cat").stdout
        assert "event=stale_token_removed" in journal and "staledir/autorestart" in journal

    checked(box, body)


def test_reconnect_before_ready_is_refused_and_the_gateway_keeps_running(box: Box) -> None:
    """CommandDispatcher.java:80-92: RECONNECTDATA before the main window exists ends the JVM
    (exit 76); ibgwd refuses it until the gateway is ready."""

    def body() -> None:
        stack.install(box, stack.base_settings(), sim={"LoginSeconds": "15"})
        box.run("systemctl", "start", "--no-block", kit.UNIT)
        stack.wait_for(
            lambda: kit.count(box, "starting") >= 1, 60, "the simulated Gateway to start"
        )
        stack.wait_for(lambda: "login" in kit.status_text(box), 30, "logging in")
        pid = int(stack.show(box, kit.IBC, "MainPID"))
        for method in ("ReconnectData", "ReconnectAccount"):
            r = kit.call(box, method, "s", "paper")
            assert r.returncode != 0 and "not ready" in r.stderr, (method, r.stdout, r.stderr)
        # Nor a soft restart: before login IBC acknowledges RESTART and does nothing
        # (RestartTask.java:58-125), so ibgwd says so instead of pretending.
        r = kit.call(box, "Restart", "sb", "paper", "false")
        assert r.returncode != 0 and "not logged in" in r.stderr, (r.stdout, r.stderr)
        time.sleep(2)
        assert int(stack.show(box, kit.IBC, "MainPID")) == pid
        assert kit.count(box, "exit") == 0
        assert not [e for e in kit.events(box) if "RECONNECT" in e]
        stack.wait_for(lambda: kit.state(box) == "ready", 60, "ready")
        r = kit.call(box, "ReconnectData", "s", "paper")
        assert r.returncode == 0, r.stderr

    checked(box, body)


def test_recovery_budget_survives_an_ibgwd_restart(box: Box) -> None:
    """A Gateway that keeps crashing spends the hourly budget; a crash of ibgwd itself must
    not hand it a fresh budget (one more login, not RECOVERY_MAX_PER_HOUR more)."""

    def body() -> None:
        settings = stack.base_settings() | {
            "RECOVERY_MAX_PER_HOUR": "2",
            "RECOVERY_BACKOFF": "600",
        }
        stack.install(box, settings, sim={"Scenario": "crash_after", "CrashAfterSeconds": "2"})
        box.run("systemctl", "start", "--no-block", kit.UNIT)
        stack.wait_for(lambda: kit.state(box) == "rate_limited", 120, "the recovery limit")
        budget = box.path("/var/lib/ibgwd/default/recovery-budget.json").read_text()
        starts = kit.count(box, "starting")
        old = int(stack.show(box, kit.UNIT, "MainPID"))
        box.run("kill", "-9", str(old))
        stack.wait_for(
            lambda: int(stack.show(box, kit.UNIT, "MainPID") or 0) not in (0, old),
            60,
            "systemd to restart ibgwd",
        )
        stack.wait_for(lambda: kit.state(box) == "rate_limited", 120, "the limit again")
        time.sleep(5)
        # The restarted ibgwd started the stopped Gateway once; its crash met the saved budget.
        assert kit.count(box, "starting") == starts + 1, budget
        assert kit.state(box) == "rate_limited"
        assert stack.show(box, kit.UNIT, "ActiveState") == "active"

    checked(box, body)


def test_daily_logoff_is_planned_a_new_login_follows_and_no_recovery_is_counted(
    box: Box,
) -> None:
    """AutoLogoffTime (IbcTws.java:588-595, ConfigureAutoLogoffOrRestartTimeTask): the Gateway
    shuts down without a token, ibcstart.sh ends (l.562); ibgwd starts the next login."""

    def body() -> None:
        import datetime as dt

        now = dt.datetime.now(dt.UTC)
        at = (now + dt.timedelta(seconds=80)).replace(second=0, microsecond=0)
        settings = stack.base_settings() | {"AUTO_LOGOFF_TIME": at.strftime("%I:%M %p")}
        stack.install(box, settings, sim={"ShutdownSeconds": "2"})
        stack.start(box)
        assert kit.properties(box)["NextRestart"]["paper"] == 0.0  # a logoff, no restart
        texts: set[str] = set()

        def logged_off_and_back() -> bool:
            texts.add(kit.status_text(box))
            relaunched = kit.count(box, "auto_logoff") >= 1 and kit.count(box, "starting") >= 2
            return relaunched and kit.state(box) == "ready"

        stack.wait_for(logged_off_and_back, 200, "the logoff and a new login", 0.2)
        print(f"status texts around the logoff: {sorted(texts)}")
        assert "restarting (daily logoff)" in texts
        assert kit.full_logins(box) == 2
        assert all(v == 0.0 for v in kit.recoveries(box).values()), kit.recoveries(box)

    checked(box, body)
