"""The thin org.ibgwd.Gateway1.Manager interface: translate types and errors, check, delegate.

No `from __future__ import annotations` here: dasbus reads the annotations at class creation
to generate the introspection XML, and needs them as real types.
"""

# ruff: noqa: N802  (D-Bus member names are CamelCase by convention)

import logging
from typing import Any

from dasbus.server.interface import dbus_interface
from dasbus.server.property import PropertiesInterface
from dasbus.typing import Bool, Dict, Double, List, Str, Tuple, UInt16, UInt32

from ibgwd.config.model import Mode
from ibgwd.dbus.auth import ACTION_MANAGE, Authorizer, requires_authorization, secure_by_default
from ibgwd.dbus.errors import InvalidArgumentError
from ibgwd.dbus.properties import changed_properties, property_values
from ibgwd.names import MANAGER_INTERFACE
from ibgwd.status import Controller, Status

log = logging.getLogger(__name__)

ALL_MODES = ""
MODE_ACCEPTED = '"" (all gateways), ' + " or ".join(f'"{m.value}"' for m in Mode)


def _checked_mode(mode: str) -> str:
    if mode != ALL_MODES and mode not in {m.value for m in Mode}:
        raise InvalidArgumentError("mode", mode, MODE_ACCEPTED)
    return mode


@secure_by_default
@dbus_interface(MANAGER_INTERFACE)
class ManagerInterface(PropertiesInterface):  # type: ignore[misc]
    """Control and status of one ibgwd instance.

    Properties are read from the supervisor's latest Status snapshot and announced with
    PropertiesChanged when, and only when, their value changes. Modes are "live" and "paper".
    Timestamps are Unix seconds (0 = never); durations are seconds.
    """

    def __init__(self, controller: Controller, authorizer: Authorizer) -> None:
        super().__init__()
        self._controller = controller
        self._authorizer = authorizer
        self._values = property_values(controller.status())

    @property
    def authorizer(self) -> Authorizer:
        return self._authorizer

    def update(self, status: Status) -> list[str]:
        """Take a new snapshot; emit PropertiesChanged for what changed. Returns those names."""
        values = property_values(status)
        changed = changed_properties(self._values, values)
        self._values = values
        for name in changed:
            self.report_changed_property(name)
        if changed:
            self.flush_changes()
        return changed

    # --- methods (each one carries an authorization decision) ---

    @requires_authorization(ACTION_MANAGE)
    def Reload(self) -> List[Str]:
        """Re-read the settings, validate, re-render; restart only what changed.

        Returns the names of the restarted components (e.g. ["vnc"]). A bad configuration is
        refused with org.ibgwd.Gateway1.Error.InvalidConfiguration naming the setting, and
        nothing running is touched.
        """
        log.info("dbus call=Reload")
        return list(self._controller.reload())

    @requires_authorization(ACTION_MANAGE)
    def Restart(self, mode: Str, hard: Bool) -> Str:
        """Restart the gateway of `mode` ("" = all): soft via IBC (no new 2FA) or hard.

        A soft restart needs a logged-in Gateway (else org.ibgwd.Gateway1.Error.NotReady) and
        takes effect at the start of the next minute, as IBC schedules it. Returns what happens
        and when, e.g. "paper: soft restart at 10:46 PM (in 35 s)"."""
        log.info("dbus call=Restart mode=%s hard=%s", mode, hard)
        return self._controller.restart(bool(hard), _checked_mode(mode))

    @requires_authorization(ACTION_MANAGE)
    def ReconnectData(self, mode: Str) -> None:
        """Ask the gateway of `mode` ("" = all) to reconnect its market data farms.

        Refused with org.ibgwd.Gateway1.Error.NotReady unless the gateway is ready (before its
        main window exists, IBC's RECONNECTDATA ends the Gateway)."""
        log.info("dbus call=ReconnectData mode=%s", mode)
        self._controller.reconnect("data", _checked_mode(mode))

    @requires_authorization(ACTION_MANAGE)
    def ReconnectAccount(self, mode: Str) -> None:
        """Ask the gateway of `mode` ("" = all) to reconnect to the account server.

        Refused with org.ibgwd.Gateway1.Error.NotReady unless the gateway is ready."""
        log.info("dbus call=ReconnectAccount mode=%s", mode)
        self._controller.reconnect("account", _checked_mode(mode))

    # --- read-only properties ---

    def _get(self, name: str) -> Any:
        return self._values[name]

    @property
    def Instance(self) -> Str:
        """Instance name ("default" for ibgwd.service, X for ibgwd@X.service)."""
        return self._get("Instance")

    @property
    def Version(self) -> Str:
        """ibgwd's version."""
        return self._get("Version")

    @property
    def State(self) -> Str:
        """Worst state of the gateways: starting, logging_in, waiting_2fa, select_2fa_device,
        expired_2fa, ready, restarting, degraded, recovering, rate_limited, login_failed,
        failed or stopping."""
        return self._get("State")

    @property
    def Ready(self) -> Bool:
        """True once every gateway answered the API check (systemd READY=1 sent)."""
        return self._get("Ready")

    @property
    def Reloading(self) -> Bool:
        """True while a reload is in progress (between RELOADING=1 and READY=1)."""
        return self._get("Reloading")

    @property
    def StatusText(self) -> Str:
        """One human line, the same as systemd's STATUS=."""
        return self._get("StatusText")

    @property
    def TradingMode(self) -> Str:
        """Configured TRADING_MODE: live, paper or both."""
        return self._get("TradingMode")

    @property
    def GatewayStates(self) -> Dict[Str, Str]:
        """mode -> state of that gateway (same values as State)."""
        return self._get("GatewayStates")

    @property
    def ApiUp(self) -> Dict[Str, Bool]:
        """mode -> whether the last TWS API probe succeeded."""
        return self._get("ApiUp")

    @property
    def Ports(self) -> Dict[Str, Tuple[UInt16, UInt16]]:
        """mode -> (API port, relay port); relay port 0 = no relay."""
        return self._get("Ports")

    @property
    def LastProbe(self) -> Dict[Str, Tuple[Double, Double]]:
        """mode -> (Unix time of the last API probe, its latency in seconds); 0 = never."""
        return self._get("LastProbe")

    @property
    def Components(self) -> List[Tuple[Str, Str, Str, Str, UInt32, UInt32]]:
        """Child units: (name, unit, ActiveState, SubState, restarts, main PID or 0)."""
        return self._get("Components")

    @property
    def RestartCounts(self) -> Dict[Str, UInt32]:
        """component name -> restarts (systemd NRestarts plus restarts ibgwd ordered)."""
        return self._get("RestartCounts")

    @property
    def Recoveries(self) -> Dict[Str, Dict[Str, UInt32]]:
        """mode -> recovery kind -> number of recoveries of that kind."""
        return self._get("Recoveries")

    @property
    def StartedTimestamp(self) -> Double:
        """Unix time the daemon started."""
        return self._get("StartedTimestamp")

    @property
    def ReadyTimestamp(self) -> Double:
        """Unix time of the first READY of this run; 0 = not yet."""
        return self._get("ReadyTimestamp")

    @property
    def GatewayVersion(self) -> Str:
        """Installed IB Gateway version ("" = unknown)."""
        return self._get("GatewayVersion")

    @property
    def IbcVersion(self) -> Str:
        """Installed IBC version ("" = unknown)."""
        return self._get("IbcVersion")

    @property
    def NextRestart(self) -> Dict[Str, Double]:
        """mode -> Unix time of the Gateway's next daily restart (AUTO_RESTART_TIME, no new
        login); 0 = none (AUTO_LOGOFF_TIME instead)."""
        return self._get("NextRestart")

    @property
    def NextFullLogin(self) -> Dict[Str, Double]:
        """mode -> Unix time of the next weekly full login (2FA): TWS_COLD_RESTART on Sunday,
        else IB's weekly re-authentication (estimated: the first daily restart on a Sunday)."""
        return self._get("NextFullLogin")

    @property
    def SoftRestartAt(self) -> Dict[Str, Double]:
        """mode -> Unix time a soft restart accepted by IBC takes effect; 0 = none pending."""
        return self._get("SoftRestartAt")

    @property
    def TwoFactorDeadline(self) -> Dict[Str, Double]:
        """mode -> Unix time the pending 2FA prompt expires; 0 = no prompt pending."""
        return self._get("TwoFactorDeadline")

    @property
    def RestartReason(self) -> Dict[Str, Str]:
        """mode -> while restarting: "daily restart", "cold restart", "soft restart", ...;
        "" otherwise."""
        return self._get("RestartReason")

    @property
    def ReadOnlyApi(self) -> Dict[Str, Str]:
        """mode -> READ_ONLY_API as given to IBC: "yes" (orders refused), "no", or "unset"
        (the Gateway's own setting, read-only on a fresh install)."""
        return self._get("ReadOnlyApi")

    @property
    def LoginFailures(self) -> Dict[Str, UInt32]:
        """mode -> "Login failed" dialogs seen (one dialog is one failure)."""
        return self._get("LoginFailures")
