"""Pure classifier of the IBC unit's journal: IBC's own lines and its launcher's echo lines.

The IBC unit's journal holds two kinds of lines: `ibcstart.sh`'s echo lines (no prefix) and
the JVM's `yyyy-MM-dd HH:mm:ss:SSS IBC: <message>` lines (IBC `Utils.formatMessage`). Each
line maps to at most one event; the match is on the whole message where IBC prints a fixed
text, so that look-alikes do not count: the window-event lines of the "Login failed" dialog
(`detected dialog entitled: Login failed; event=...`) are not login failures, and StopTask's
`Login has completed: exiting via [File, Close] menu` is not a login.

The source of each pattern (IBC 3.24.1) is named next to it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class IbcEvent(enum.Enum):
    NONE = "none"
    JVM_STARTING = "jvm_starting"
    LOGIN_DIALOG = "login_dialog"
    TWOFA_INITIATED = "twofa_initiated"
    TWOFA_DEVICE_SELECT = "twofa_device_select"
    TWOFA_DURATION = "twofa_duration"
    TWOFA_EXPIRED_WAITING = "twofa_expired_waiting"
    TWOFA_RELOGIN = "twofa_relogin"
    TWOFA_EXIT_PENDING = "twofa_exit_pending"
    LOGIN_COMPLETED = "login_completed"
    LOGIN_FAILED = "login_failed"
    SHUTDOWN_STARTED = "shutdown_started"
    RESTART_SCHEDULED = "restart_scheduled"
    COLD_RESTART_SCHEDULED = "cold_restart_scheduled"
    COLD_RESTARTING = "cold_restarting"
    JVM_EXITED = "jvm_exited"
    RELAUNCHING = "relaunching"
    PAUSED = "paused"
    EXIT_ERROR = "exit_error"
    EXISTING_SESSION = "existing_session"


@dataclass(frozen=True)
class IbcLine:
    """One classified line; `value` is what the line carries (a time, seconds, an exit code)."""

    event: IbcEvent
    value: str = ""

    @property
    def number(self) -> int | None:
        try:
            return int(self.value)
        except ValueError:
            return None


NONE = IbcLine(IbcEvent.NONE)

# IBC Utils.formatMessage: "yyyy-MM-dd HH:mm:ss:SSS IBC: " + message.
_IBC_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d\d\d IBC: ")

# Messages IBC prints verbatim (Utils.logToConsole(<literal>)): exact match on the message.
_EXACT: dict[str, IbcEvent] = {
    "Starting Gateway": IbcEvent.JVM_STARTING,  # IbcTws.java:472
    "Second Factor Authentication initiated": IbcEvent.TWOFA_INITIATED,  # LoginManager:85
    "Login has completed": IbcEvent.LOGIN_COMPLETED,  # LoginManager.java:92
    "Login failed": IbcEvent.LOGIN_FAILED,  # LoginFailedDialogHandler.java:41
    "Re-starting session": IbcEvent.RELAUNCHING,  # SessionManager.java:60 (-Drestart)
    # LoginManager.java:144 and :150
    "Re-login after second factor authentication timeout not required": (
        IbcEvent.TWOFA_EXPIRED_WAITING
    ),
    "Re-login after second factor authentication timeout in 5 second": IbcEvent.TWOFA_RELOGIN,
    # LoginFailedDialogHandler:42, LoginErrorDialogHandler:40, GatewayDialogHandler:43
    "Cold restart in progress": IbcEvent.COLD_RESTARTING,
    "Login dialog has been invalidated - initiate cold restart": IbcEvent.COLD_RESTARTING,
}

# Messages with a variable part (IBC), as (regex on the message, event); group 1 = value.
_IBC_PATTERNS: tuple[tuple[re.Pattern[str], IbcEvent], ...] = (
    # SessionManager.java:63 (a cold start: the login dialog follows)
    (re.compile(r"^Starting session: will exit if login dialog"), IbcEvent.JVM_STARTING),
    # AbstractLoginHandler.java:34
    (re.compile(r"^Login dialog WINDOW_OPENED"), IbcEvent.LOGIN_DIALOG),
    # LoginManager.java:121
    (re.compile(r"^Duration since login: (\d+) seconds"), IbcEvent.TWOFA_DURATION),
    # LoginManager.java:138
    (
        re.compile(r"^If login has not completed, IBC will exit in (\d+) seconds"),
        IbcEvent.TWOFA_EXIT_PENDING,
    ),
    # SecondFactorAuthenticationDialogHandler.java:101,117 (device list, no device chosen)
    (
        re.compile(r"^You should specify the required second factor device"),
        IbcEvent.TWOFA_DEVICE_SELECT,
    ),
    (re.compile(r"^could not find second factor device"), IbcEvent.TWOFA_DEVICE_SELECT),
    # TwsListener.logWindow: the Gateway's shutdown (autorestart, STOP, cold restart) begins
    (
        re.compile(r"^detected dialog entitled: Shutdown progress; event=Opened"),
        IbcEvent.SHUTDOWN_STARTED,
    ),
    # RestartTask.java:117 (a RESTART command: the restart time is the next minute)
    (
        re.compile(r"^Setting auto-restart time to (\d\d:\d\d [AP]M)"),
        IbcEvent.RESTART_SCHEDULED,
    ),
    # IbcTws.java:499-501
    (
        re.compile(r"^(?:Gateway|TWS) will be cold restarted at (\d{4}/\d\d/\d\d \d\d:\d\d)"),
        IbcEvent.COLD_RESTART_SCHEDULED,
    ),
    # Utils.java:94
    (re.compile(r"^Exiting after error with exit code=(\d+)"), IbcEvent.EXIT_ERROR),
    # ExistingSessionDetectedDialogHandler.java:58-133 ("... (scenario N)")
    (re.compile(r"\(scenario (\d)\)$"), IbcEvent.EXISTING_SESSION),
)

# ibcstart.sh's echo lines (no prefix), 3.24.1 line numbers.
_LAUNCHER_PATTERNS: tuple[tuple[re.Pattern[str], IbcEvent], ...] = (
    (re.compile(r"^IBC returned exit status (\d+)"), IbcEvent.JVM_EXITED),  # l.541
    (re.compile(r"^IBC will cold-restart shortly"), IbcEvent.COLD_RESTARTING),  # l.548
    (re.compile(r"^IBC will restart shortly"), IbcEvent.RELAUNCHING),  # l.569
    (re.compile(r"^autorestart file found at (\S+?):"), IbcEvent.RELAUNCHING),  # l.377
    (re.compile(r"^IBC is paused"), IbcEvent.PAUSED),  # l.555
    (re.compile(r"^Starting Gateway with this command"), IbcEvent.JVM_STARTING),  # l.518
)


def classify(line: str) -> IbcLine:
    """The event one journal line of the IBC unit stands for (NONE for most lines)."""
    text = line.rstrip("\r\n")
    prefix = _IBC_PREFIX.match(text)
    if prefix:
        message = text[prefix.end() :].rstrip()
        exact = _EXACT.get(message)
        if exact is not None:
            return IbcLine(exact)
        patterns = _IBC_PATTERNS
    else:
        message = text.strip()
        patterns = _LAUNCHER_PATTERNS
    for pattern, event in patterns:
        match = pattern.search(message)
        if match:
            return IbcLine(event, match.group(1) if match.groups() else "")
    return NONE
