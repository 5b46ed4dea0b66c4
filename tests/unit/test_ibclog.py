"""The IBC log classifier: real lines of IBC 3.24.1 and its launcher, each with its source.

The corpus `tests/corpus/ibc-log-lines.txt` (`<event>\\t<source>\\t<line>`, written with the
simulator) is the main table; the lines below pin the look-alikes that must not count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ibgwd.supervisor.ibclog import IbcEvent, classify

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "ibc-log-lines.txt"
P = "2026-12-04 23:45:00:123 IBC: "

TABLE = [
    # (line, event, value, source)
    (P + "Login has completed", "login_completed", "", "LoginManager.java:92"),
    (P + "Login has completed: exiting via [File, Close] menu", "none", "", "StopTask.java:85"),
    (P + "Login has already completed - no need for IBC to exit", "none", "", "LoginManager:173"),
    (P + "Login failed", "login_failed", "", "LoginFailedDialogHandler.java:41"),
    (P + "detected dialog entitled: Login failed; event=Opened", "none", "", "TwsListener:146"),
    (P + "detected dialog entitled: Login failed; event=Closed", "none", "", "TwsListener:146"),
    (P + "Cold restart in progress", "cold_restarting", "", "LoginFailedDialogHandler.java:42"),
    (
        P + "detected dialog entitled: Shutdown progress; event=Opened",
        "shutdown_started",
        "",
        "TwsListener.java:146 (ShutdownProgressDialogHandler)",
    ),
    (P + "detected dialog entitled: Shutdown progress; event=Closed", "none", "", "TwsListener"),
    (
        P + "Setting auto-restart time to 11:46 PM",
        "restart_scheduled",
        "11:46 PM",
        "RestartTask:117",
    ),
    (P + "Setting Auto restart time", "none", "", "ConfigureAutoLogoffOrRestartTimeTask:53"),
    (P + "Auto restart time set to 11:45 PM", "none", "", "ConfigureAutoLogoff…Task:105"),
    (
        P + "Gateway will be cold restarted at 2026/12/06 07:05",
        "cold_restart_scheduled",
        "2026/12/06 07:05",
        "IbcTws.java:499",
    ),
    (P + "Gateway will be shut down at 2026/12/06 07:05", "none", "", "IbcTws.java:499"),
    (P + "Second Factor Authentication initiated", "twofa_initiated", "", "LoginManager:85"),
    (P + "Duration since login: 181 seconds", "twofa_duration", "181", "LoginManager:121"),
    (
        P + "Re-login after second factor authentication timeout not required",
        "twofa_expired_waiting",
        "",
        "LoginManager.java:144",
    ),
    (
        P + "Re-login after second factor authentication timeout in 5 second",
        "twofa_relogin",
        "",
        "LoginManager.java:150",
    ),
    (
        P + "If login has not completed, IBC will exit in 60 seconds",
        "twofa_exit_pending",
        "60",
        "LoginManager.java:138",
    ),
    (
        P + "could not find second factor device 'IB Key' in the list",
        "twofa_device_select",
        "",
        "SecondFactorAuthenticationDialogHandler.java:117",
    ),
    (P + "Re-starting session", "relaunching", "", "SessionManager.java:60"),
    (
        P + "Starting session: will exit if login dialog is not displayed within 60 seconds",
        "jvm_starting",
        "",
        "SessionManager.java:63",
    ),
    (P + "Starting Gateway", "jvm_starting", "", "IbcTws.java:472"),
    (
        P + "Login dialog WINDOW_OPENED: LoginState is LOGGED_OUT",
        "login_dialog",
        "",
        "AbstractLoginHandler.java:34",
    ),
    (P + "Exiting after error with exit code=1100", "exit_error", "1100", "Utils.java:94"),
    (
        P + "End this session and let the other session proceed (scenario 2)",
        "existing_session",
        "2",
        "ExistingSessionDetectedDialogHandler.java:64",
    ),
    ("IBC returned exit status 0", "jvm_exited", "0", "ibcstart.sh:541"),
    ("IBC will cold-restart shortly", "cold_restarting", "", "ibcstart.sh:548"),
    ("IBC will restart shortly", "relaunching", "", "ibcstart.sh:569"),
    (
        "autorestart file found at /var/lib/ibgwd/default/settings/./abcdefgh/autorestart: "
        "authentication will not be required",
        "relaunching",
        "/var/lib/ibgwd/default/settings/./abcdefgh/autorestart",
        "ibcstart.sh:377",
    ),
    ("autorestart file not found: full authentication will be required", "none", "", "l.404"),
    ("IBC is paused", "paused", "", "ibcstart.sh:555"),
    ("Starting Gateway with this command:", "jvm_starting", "", "ibcstart.sh:518"),
    # An IBC message echoed without the prefix is not IBC's: only the launcher's lines count.
    ("Login failed", "none", "", "not an IBC line (no prefix)"),
    (P + "Click button: Paper Log In", "none", "", "GatewayLoginFrameHandler"),
]


@pytest.mark.parametrize(("line", "event", "value", "source"), TABLE)
def test_lines_classify_as_their_source_says(
    line: str, event: str, value: str, source: str
) -> None:
    got = classify(line)
    assert (got.event.value, got.value) == (event, value), source


def test_one_login_failed_dialog_yields_exactly_one_failure() -> None:
    """Real IBC prints the dialog's window events around the handler's line (IBC#216 log)."""
    events = ["Opened", "Activated", "Focused", "Lost focus", "Deactivated", "Closed"]
    lines = [P + f"detected dialog entitled: Login failed; event={e}" for e in events]
    lines.insert(2, P + "Login failed")
    assert [classify(x).event for x in lines].count(IbcEvent.LOGIN_FAILED) == 1


def _corpus() -> list[tuple[str, str, str]]:
    if not CORPUS.exists():
        return []
    rows = []
    for raw in CORPUS.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.startswith("#"):
            continue
        event, source, line = raw.split("\t", 2)
        rows.append((event, source, line))
    return rows


def test_every_corpus_line_classifies_as_annotated() -> None:
    rows = _corpus()
    if not rows:
        pytest.skip(f"{CORPUS} not there yet (written with the simulator)")
    known = {e.value for e in IbcEvent}
    wrong = []
    for event, source, line in rows:
        assert event in known, f"unknown event {event!r} in the corpus ({source})"
        got = classify(line).event.value
        if got != event:
            wrong.append(f"{source}: {line!r}: annotated {event}, classified {got}")
    assert not wrong, "\n".join(wrong)
