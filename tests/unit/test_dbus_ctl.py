"""ibgwdctl without a bus: formatting, exit codes and the reload wait, over a fake Manager."""

from __future__ import annotations

import argparse
import io
import json
import time
from typing import Any

import pytest
from dbus_samples import STARTED, sample_status

from ibgwd import ctl
from ibgwd.dbus.properties import property_values


class FakeManager:
    def __init__(self, error: ctl.CtlError | None = None, reloading_polls: int = 0) -> None:
        self.props = property_values(sample_status())
        self.error = error
        self.reloading_polls = reloading_polls  # Reloading stays true for this many reads
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.error is not None:
            raise self.error

    def properties(self) -> dict[str, Any]:
        self._call("properties")
        return dict(self.props)

    def get(self, name: str) -> Any:
        if name == "Reloading" and self.reloading_polls > 0:
            self.reloading_polls -= 1
            return True
        return self.props[name]

    def reload(self, timeout_s: float) -> list[str]:
        self._call("reload")
        return ["vnc"]

    def restart(self, mode: str, hard: bool, timeout_s: float) -> str:
        self._call("restart", mode, hard)
        return "paper: soft restart at 10:46 PM (in 35 s)"

    def reconnect(self, what: str, mode: str, timeout_s: float) -> None:
        self._call("reconnect", what, mode)

    def screenshot(self, timeout_s: float) -> bytes:
        self._call("screenshot")
        return b"\x89PNG\r\n\x1a\nfake"


def run(argv: list[str], manager: FakeManager) -> int:
    def connect(args: argparse.Namespace) -> FakeManager:
        return manager

    return ctl.main(argv, connect=connect)


def test_status_human_output_is_short_and_names_the_essentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["status"], FakeManager()) == 0
    out = capsys.readouterr().out
    assert out.startswith("● ibgwd instance default - ready\n")
    assert "paper: ready, API 4002 up, relay 4004" in out
    assert "   vnc        active/running  pid 11  restarts 3" in out
    assert len(out.splitlines()) <= 15


def test_status_human_times_are_relative_to_now() -> None:
    props = property_values(sample_status())
    text = ctl.format_status(props, now=STARTED + 3700, tz=time.gmtime)
    assert "Started: Tue 2023-11-14 22:13:20 GMT; 1h 1min ago" in text
    assert "ready after 42s" in text
    assert "probed 1h ago in 15ms" in text  # probe at STARTED+100
    assert "recoveries: soft_restart 2" in text


def test_status_json_is_structured(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", "--json"], FakeManager()) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "ready" and data["ready"] is True
    assert data["gateways"]["paper"]["api_port"] == 4002
    assert data["gateways"]["paper"]["relay_port"] == 4004
    assert data["gateways"]["paper"]["recoveries"] == {"hard_restart": 0, "soft_restart": 2}
    assert data["components"][1]["name"] == "vnc"
    assert data["components"][1]["restarts"] == 3


def test_reload_waits_until_reloading_is_false(capsys: pytest.CaptureFixture[str]) -> None:
    manager = FakeManager(reloading_polls=3)
    assert run(["reload"], manager) == 0
    assert manager.reloading_polls == 0
    assert "restarted: vnc" in capsys.readouterr().out


def test_reload_wait_gives_up_after_the_timeout() -> None:
    manager = FakeManager(reloading_polls=10**9)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ctl.CtlError) as caught:
        ctl.wait_reload_finished(manager, 2.0, clock=lambda: now[0], sleep=sleep)
    assert caught.value.exit_code == 1
    assert "did not finish within 2s" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("org.ibgwd.Gateway1.Error.InvalidConfiguration", 78),
        ("org.ibgwd.Gateway1.Error.CredentialError", 78),
        ("org.freedesktop.DBus.Error.AccessDenied", 77),
        ("org.freedesktop.DBus.Error.ServiceUnknown", 69),
        ("org.freedesktop.DBus.Error.NameHasNoOwner", 69),
        ("org.ibgwd.Gateway1.Error.NotReady", 1),
        ("org.ibgwd.Gateway1.Error.Failed", 1),
        ("org.freedesktop.DBus.Error.InvalidArgs", 1),
    ],
)
def test_dbus_error_names_map_to_exit_codes(name: str, code: int) -> None:
    assert ctl._error_for(name, "msg", "default").exit_code == code


def test_reload_refused_exits_78_and_names_the_setting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    refused = ctl._error_for(
        "org.ibgwd.Gateway1.Error.InvalidConfiguration",
        "TRADING_MODE: invalid value 'bogus'; accepted: live, paper or both",
        "default",
    )
    assert run(["reload"], FakeManager(error=refused)) == 78
    assert "TRADING_MODE" in capsys.readouterr().err


def test_restart_and_reconnect_pass_mode_and_hard() -> None:
    manager = FakeManager()
    assert run(["restart", "--hard", "--mode", "paper"], manager) == 0
    assert run(["restart"], manager) == 0
    assert run(["reconnect", "account", "--mode", "live"], manager) == 0
    assert run(["reconnect", "data"], manager) == 0
    assert manager.calls == [
        ("restart", ("paper", True)),
        ("restart", ("", False)),
        ("reconnect", ("account", "live")),
        ("reconnect", ("data", "")),
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["frobnicate"],
        ["restart", "--mode", "demo"],
        ["reconnect", "market"],
        ["--instance", "bad-name", "status"],
        ["--timeout", "0", "status"],
    ],
)
def test_bad_usage_exits_64(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(argv, FakeManager()) == 64
    assert capsys.readouterr().err


def test_bad_instance_message_names_what_is_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    run(["--instance", "bad-name", "status"], FakeManager())
    assert "invalid instance 'bad-name'; accepted: a letter" in capsys.readouterr().err


def not_ready_manager() -> FakeManager:
    from ibgwd.status import State

    manager = FakeManager()
    status = sample_status(state=State.WAITING_2FA, ready=False)
    paper = status.gateways[0]
    from dataclasses import replace

    status = replace(status, gateways=(replace(paper, state=State.WAITING_2FA),))
    manager.props = property_values(status)
    return manager


def test_no_command_means_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([], FakeManager()) == 0
    assert capsys.readouterr().out.startswith("● ibgwd instance default - ready")


def test_status_exits_3_when_not_ready_like_systemctl(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status"], not_ready_manager()) == 3
    assert "waiting_2fa (not ready)" in capsys.readouterr().out


def test_is_ready_is_quiet_and_answers_by_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["is-ready"], FakeManager()) == 0
    assert run(["is-ready", "--mode", "paper"], FakeManager()) == 0
    assert run(["is-ready", "--mode", "live"], FakeManager()) == 3  # no live gateway here
    assert run(["is-ready"], not_ready_manager()) == 3
    assert capsys.readouterr() == ("", "")


def test_global_json_applies_to_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--json", "status"], FakeManager()) == 0
    assert json.loads(capsys.readouterr().out)["ready"] is True
    assert run(["--json"], FakeManager()) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "ready"
    assert run(["--json", "is-ready"], not_ready_manager()) == 3
    assert json.loads(capsys.readouterr().out) == {"ready": False, "state": "waiting_2fa"}
    assert run(["--json", "reload"], FakeManager()) == 0
    assert json.loads(capsys.readouterr().out) == {"restarted": ["vnc"]}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from ibgwd import __version__

    assert run(["--version"], FakeManager()) == 0
    assert capsys.readouterr().out.strip() == f"ibgwdctl {__version__}"


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("environ", "tty", "expected"),
    [
        ({}, True, True),
        ({}, False, False),
        ({"NO_COLOR": ""}, True, False),
        ({"TERM": "dumb"}, True, False),
        ({"SYSTEMD_COLORS": "0"}, True, False),
        ({"SYSTEMD_COLORS": "1"}, False, True),
    ],
)
def test_colour_only_on_a_terminal_and_never_with_no_color(
    environ: dict[str, str], tty: bool, expected: bool
) -> None:
    stream = Tty() if tty else io.StringIO()
    assert ctl.use_colour(stream, environ) is expected


def test_colour_marks_the_bullet_and_state() -> None:
    props = not_ready_manager().props
    text = ctl.colourize(ctl.format_status(props, now=STARTED), props)
    assert text.startswith("\033[0;1;33m●\033[0m ibgwd instance default")
    assert "State: \033[0;1;33mwaiting_2fa\033[0m (not ready)" in text


def test_wait_returns_once_ready_and_treats_a_missing_daemon_as_not_ready() -> None:
    answers: list[Any] = [
        ctl.CtlError("not running", 69),
        {"Ready": False},
        {"Ready": True},
    ]

    def get() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    now = [0.0]
    assert ctl.wait_ready(get, "", 60, clock=lambda: now[0], sleep=lambda s: None)
    assert answers == []


def test_wait_gives_up_after_its_timeout() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    assert not ctl.wait_ready(lambda: {"Ready": False}, "", 5, clock=lambda: now[0], sleep=sleep)


def test_restart_wait_needs_to_see_the_gateway_leave_ready_first() -> None:
    seen = iter([{"Ready": True}, {"Ready": False}, {"Ready": False}, {"Ready": True}])
    assert ctl.wait_ready(
        lambda: next(seen), "", 60, leave_first=True, clock=lambda: 0.0, sleep=lambda s: None
    )


def test_restart_wait_fails_with_3_when_not_ready_again(capsys: pytest.CaptureFixture[str]) -> None:
    manager = not_ready_manager()
    code = run(["restart", "--wait", "--wait-timeout", "0.01"], manager)
    assert code == 3
    assert "not ready again within" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("component", "mode", "units"),
    [
        ("", "", ["ibgwd.service", "ibgwd-default-*"]),
        ("ibc", "", ["ibgwd-default-ibc*"]),
        ("ibc", "paper", ["ibgwd-default-ibc-paper.service"]),
        ("", "live", ["ibgwd.service", "ibgwd-default-*-live.service"]),
    ],
)
def test_logs_cover_the_service_and_its_transient_units(
    component: str, mode: str, units: list[str]
) -> None:
    argv = ctl.journal_command("default", component, mode, follow=True, lines=20)
    assert argv[0] == "journalctl"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-u"] == units
    assert argv[-3:] == ["-n", "20", "-f"]
    named = ctl.journal_command("live", "", "", follow=False, lines=None)
    assert "ibgwd@live.service" in named and "ibgwd-live-*" in named


def test_screenshot_refuses_a_terminal_and_writes_a_private_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdout", Tty())
    assert run(["screenshot"], FakeManager()) == 64
    target = tmp_path / "gw.png"
    assert run(["screenshot", "-o", str(target)], FakeManager()) == 0
    assert target.read_bytes().startswith(b"\x89PNG")
    assert target.stat().st_mode & 0o777 == 0o600


def test_status_shows_the_2fa_deadline_and_the_next_restarts() -> None:
    from dataclasses import replace

    from ibgwd.status import State

    now = STARTED + 1000
    status = sample_status(state=State.WAITING_2FA, ready=False)
    paper = replace(
        status.gateways[0],
        state=State.WAITING_2FA,
        twofa_deadline_timestamp=now + 130,
        next_restart_timestamp=now + 3600 * 5,
        next_cold_restart_timestamp=now + 86400 * 3,
    )
    props = property_values(replace(status, gateways=(paper,)))
    text = ctl.format_status(props, now=now, tz=time.gmtime)
    assert "approve the login in IBKR Mobile (2min 10s left)" in text
    assert "next: restart " in text and "(in 5h)" in text and "full login (2FA)" in text
    data = ctl.status_json(props)["gateways"]["paper"]
    assert data["twofa_deadline_timestamp"] == now + 130


def test_restart_prints_what_the_daemon_says(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["restart"], FakeManager()) == 0
    assert "soft restart of all gateways requested: paper: soft restart at 10:46 PM" in (
        capsys.readouterr().out
    )


def test_notify_test_exit_status_follows_delivery(capsys: pytest.CaptureFixture[str]) -> None:
    class Delivering(FakeManager):
        ok = True

        def test_notification(self, timeout_s: float) -> tuple[bool, str]:
            return self.ok, "NOTIFY_URL: https://ntfy.example/… accepted it (HTTP 200)"

    manager = Delivering()
    assert run(["notify-test"], manager) == 0
    assert "test notification delivered: NOTIFY_URL:" in capsys.readouterr().out
    manager.ok = False
    assert run(["--json", "notify-test"], manager) == 1
    assert json.loads(capsys.readouterr().out)["delivered"] is False


def test_status_on_a_terminal_ends_with_the_journal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[str]] = []

    class Done:
        returncode = 0
        stdout = "2026-12-04T10:00:00+0000 ibgwd[1]: event=ready\n"

    def fake_run(argv: list[str], **kwargs: object) -> Done:
        seen.append(argv)
        return Done()

    monkeypatch.setattr(ctl.subprocess, "run", fake_run)
    monkeypatch.setattr("sys.stdout", Tty())
    assert run(["status", "-n", "3"], FakeManager()) == 0
    out = ctl.sys.stdout.getvalue()  # type: ignore[attr-defined]
    assert out.endswith("\n\n2026-12-04T10:00:00+0000 ibgwd[1]: event=ready\n")
    assert seen[0][:3] == ["journalctl", "--no-pager", "--quiet"] and seen[0][-2:] == ["-n", "3"]
    monkeypatch.setattr("sys.stdout", Tty())
    assert run(["status", "-n", "0"], FakeManager()) == 0 and len(seen) == 1
