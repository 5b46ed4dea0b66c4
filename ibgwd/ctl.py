"""ibgwdctl: status, reload, restart and reconnect of one ibgwd instance over D-Bus.

Exit status: 0 ok; 1 the call failed; 64 bad usage; 69 ibgwd (or the bus) is not there;
77 access denied; 78 reload refused because the new configuration is invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TextIO

from ibgwd.config.model import Mode
from ibgwd.errors import EX_CONFIG, EX_NOPERM, EX_OK, EX_UNAVAILABLE, EX_USAGE
from ibgwd.names import (
    DEFAULT_INSTANCE,
    ERROR_NAMESPACE,
    INSTANCE_ACCEPTED,
    MANAGER_INTERFACE,
    OBJECT_PATH,
    InstanceNames,
    is_valid_instance,
)

EX_FAILED = 1
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
DEFAULT_TIMEOUT_S = 90.0  # systemd's default TimeoutSec for ExecReload=
POLL_INTERVAL_S = 0.1

_ERROR_PREFIX = ".".join(ERROR_NAMESPACE) + "."
_NOT_THERE = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.UnknownObject",
}
_CONFIG_ERRORS = {_ERROR_PREFIX + "InvalidConfiguration", _ERROR_PREFIX + "CredentialError"}
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"


class CtlError(Exception):
    """A failure to report on stderr with an exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Manager(Protocol):
    """The calls ibgwdctl makes (a port: tests may hand in a fake)."""

    def properties(self) -> dict[str, Any]: ...

    def get(self, name: str) -> Any: ...

    def reload(self, timeout_s: float) -> list[str]: ...

    def restart(self, mode: str, hard: bool, timeout_s: float) -> None: ...

    def reconnect(self, what: str, mode: str, timeout_s: float) -> None: ...


class DBusManager:
    """Manager over dasbus: one bus connection, the instance's well-known name."""

    def __init__(self, instance: str, address: str | None, timeout_s: float) -> None:
        from dasbus.connection import AddressedMessageBus, SystemMessageBus

        self.names = InstanceNames(instance)
        self._timeout_ms = int(timeout_s * 1000)
        where = address or "the system bus"
        try:
            self._bus = AddressedMessageBus(address) if address else SystemMessageBus()
            owned = self._call(lambda: self._bus.proxy.NameHasOwner(self.names.bus_name))
        except CtlError:
            raise
        except Exception as exc:
            raise CtlError(f"cannot connect to {where}: {_plain(exc)}", EX_UNAVAILABLE) from exc
        if not owned:
            raise CtlError(
                f"ibgwd instance {instance!r} is not running: nobody owns "
                f"{self.names.bus_name} on {where} (systemctl status {self.names.service})",
                EX_UNAVAILABLE,
            )
        self._props = self._bus.get_proxy(self.names.bus_name, OBJECT_PATH, PROPERTIES_INTERFACE)
        self._manager = self._bus.get_proxy(self.names.bus_name, OBJECT_PATH, MANAGER_INTERFACE)

    def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except TimeoutError as exc:
            raise CtlError("no answer from ibgwd within the timeout", EX_FAILED) from exc
        except Exception as exc:
            name = getattr(exc, "dbus_name", None)
            if name is None:
                raise
            raise _error_for(str(name), _plain(exc), self.names.instance) from exc

    def properties(self) -> dict[str, Any]:
        from dasbus.typing import unwrap_variant

        raw = self._call(lambda: self._props.GetAll(MANAGER_INTERFACE, timeout=self._timeout_ms))
        return {name: unwrap_variant(value) for name, value in raw.items()}

    def get(self, name: str) -> Any:
        from dasbus.typing import unwrap_variant

        value = self._call(
            lambda: self._props.Get(MANAGER_INTERFACE, name, timeout=self._timeout_ms)
        )
        return unwrap_variant(value)

    def reload(self, timeout_s: float) -> list[str]:
        ms = int(timeout_s * 1000)
        return list(self._call(lambda: self._manager.Reload(timeout=ms)))

    def restart(self, mode: str, hard: bool, timeout_s: float) -> None:
        ms = int(timeout_s * 1000)
        self._call(lambda: self._manager.Restart(mode, hard, timeout=ms))

    def reconnect(self, what: str, mode: str, timeout_s: float) -> None:
        ms = int(timeout_s * 1000)
        method = self._manager.ReconnectData if what == "data" else self._manager.ReconnectAccount
        self._call(lambda: method(mode, timeout=ms))


def _plain(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("GDBus.Error:"):  # GLib's "GDBus.Error:<name>: <message>"
        text = text.split(": ", 1)[-1]
    return text


def _error_for(name: str, message: str, instance: str) -> CtlError:
    """Turn a D-Bus error reply into what ibgwdctl reports, with its exit status."""
    if name == ACCESS_DENIED:
        return CtlError(
            f"access denied: {message} (run as root or as a member of group ibgwd)", EX_NOPERM
        )
    if name in _NOT_THERE:
        return CtlError(f"ibgwd instance {instance!r} is not reachable: {message}", EX_UNAVAILABLE)
    if name in _CONFIG_ERRORS:
        return CtlError(f"refused, invalid configuration: {message}", EX_CONFIG)
    short = name.removeprefix(_ERROR_PREFIX)
    return CtlError(f"failed ({short}): {message}", EX_FAILED)


# --- formatting (pure) ---


def status_json(props: Mapping[str, Any]) -> dict[str, Any]:
    """Machine-readable status: snake_case keys, structs as objects."""
    ports = props.get("Ports", {})
    probes = props.get("LastProbe", {})
    modes = sorted(set(props.get("GatewayStates", {})) | set(ports))
    gateways = {}
    for mode in modes:
        api_port, relay_port = ports.get(mode, (0, 0))
        probe_ts, latency = probes.get(mode, (0.0, 0.0))
        gateways[mode] = {
            "state": props.get("GatewayStates", {}).get(mode, ""),
            "api_up": bool(props.get("ApiUp", {}).get(mode, False)),
            "api_port": api_port,
            "relay_port": relay_port,
            "last_probe_timestamp": probe_ts,
            "last_probe_latency_s": latency,
            "recoveries": dict(props.get("Recoveries", {}).get(mode, {})),
        }
    components = [
        {
            "name": name,
            "unit": unit,
            "active_state": active,
            "sub_state": sub,
            "restarts": restarts,
            "main_pid": pid,
        }
        for name, unit, active, sub, restarts, pid in props.get("Components", [])
    ]
    return {
        "instance": props.get("Instance", ""),
        "version": props.get("Version", ""),
        "state": props.get("State", ""),
        "ready": bool(props.get("Ready", False)),
        "reloading": bool(props.get("Reloading", False)),
        "status_text": props.get("StatusText", ""),
        "trading_mode": props.get("TradingMode", ""),
        "started_timestamp": props.get("StartedTimestamp", 0.0),
        "ready_timestamp": props.get("ReadyTimestamp", 0.0),
        "gateway_version": props.get("GatewayVersion", ""),
        "ibc_version": props.get("IbcVersion", ""),
        "gateways": gateways,
        "components": components,
    }


def _span(seconds: float) -> str:
    """systemd-like short duration: 42s, 3min 5s, 2h 1min, 3d 4h."""
    s = max(int(seconds), 0)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (s, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def _when(ts: float, now: float, tz: Callable[[float], time.struct_time]) -> str:
    return time.strftime("%a %Y-%m-%d %H:%M:%S %Z", tz(ts)) + f"; {_span(now - ts)} ago"


def format_status(
    props: Mapping[str, Any],
    now: float,
    tz: Callable[[float], time.struct_time] = time.localtime,
) -> str:
    """Human status, in the spirit of `systemctl status`."""
    data = status_json(props)
    versions = [f"ibgwd {data['version']}"]
    if data["gateway_version"]:
        versions.append(f"Gateway {data['gateway_version']}")
    if data["ibc_version"]:
        versions.append(f"IBC {data['ibc_version']}")
    lines = [
        f"● ibgwd instance {data['instance']} - {data['state']}"
        + (" (reloading)" if data["reloading"] else ""),
        f"     State: {data['state']}" + ("" if data["ready"] else " (not ready)"),
        f"    Status: {data['status_text'] or '-'}",
        f"   Trading: {data['trading_mode'] or '-'}",
        f"   Version: {', '.join(versions)}",
    ]
    started = float(data["started_timestamp"])
    if started:
        lines.append(f"   Started: {_when(started, now, tz)}")
    ready = float(data["ready_timestamp"])
    if ready:
        after = f"; ready after {_span(ready - started)}" if started else ""
        lines.append(f"     Ready: {_when(ready, now, tz)}{after}")
    for mode, g in data["gateways"].items():
        api = f"API {g['api_port']} {'up' if g['api_up'] else 'DOWN'}"
        relay = f", relay {g['relay_port']}" if g["relay_port"] else ""
        probe_ts = float(g["last_probe_timestamp"])
        probe = (
            f"; probed {_span(now - probe_ts)} ago in {g['last_probe_latency_s'] * 1000:.0f}ms"
            if probe_ts
            else "; not probed yet"
        )
        recoveries = ", ".join(f"{k} {v}" for k, v in g["recoveries"].items() if v)
        rec = f"; recoveries: {recoveries}" if recoveries else ""
        lines.append(f"   {mode:>7}: {g['state']}, {api}{relay}{probe}{rec}")
    if data["components"]:
        lines.append("Components:")
        width = max(len(c["name"]) for c in data["components"])
        for c in data["components"]:
            pid = f"pid {c['main_pid']}" if c["main_pid"] else "no pid"
            lines.append(
                f"   {c['name']:<{width}}  {c['active_state']}/{c['sub_state']}"
                f"  {pid}  restarts {c['restarts']}  ({c['unit']})"
            )
    return "\n".join(lines) + "\n"


# --- commands ---


def wait_reload_finished(
    manager: Manager,
    timeout_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the daemon reports Reloading false; CtlError after `timeout_s`."""
    deadline = clock() + timeout_s
    while manager.get("Reloading"):
        if clock() >= deadline:
            raise CtlError(f"reload did not finish within {timeout_s:g}s", EX_FAILED)
        sleep(POLL_INTERVAL_S)


def run(args: argparse.Namespace, manager: Manager, out: TextIO) -> int:
    """Execute one parsed command against `manager`."""
    if args.command == "status":
        props = manager.properties()
        if args.json:
            out.write(json.dumps(status_json(props), indent=2, sort_keys=True) + "\n")
        else:
            out.write(format_status(props, now=time.time()))
    elif args.command == "reload":
        started = time.monotonic()
        restarted = manager.reload(args.timeout)
        wait_reload_finished(manager, max(args.timeout - (time.monotonic() - started), 0.0))
        what = ", ".join(restarted) if restarted else "nothing"
        out.write(f"reloaded; restarted: {what}\n")
    elif args.command == "restart":
        manager.restart(args.mode, args.hard, args.timeout)
        kind = "hard" if args.hard else "soft"
        out.write(f"{kind} restart of {args.mode or 'all gateways'} requested\n")
    elif args.command == "reconnect":
        manager.reconnect(args.what, args.mode, args.timeout)
        out.write(f"reconnect {args.what} of {args.mode or 'all gateways'} requested\n")
    return EX_OK


def _instance(value: str) -> str:
    if not is_valid_instance(value):
        raise argparse.ArgumentTypeError(
            f"invalid instance {value!r}; accepted: {INSTANCE_ACCEPTED}"
        )
    return value


def _positive(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid timeout {value!r}; accepted: a positive number of seconds"
        )
    return seconds


def build_parser() -> argparse.ArgumentParser:
    modes = [m.value for m in Mode]
    parser = argparse.ArgumentParser(
        prog="ibgwdctl", description="Control a running ibgwd instance over D-Bus."
    )
    parser.add_argument(
        "--instance", type=_instance, default=DEFAULT_INSTANCE, help="instance name (%(default)s)"
    )
    parser.add_argument(
        "--bus-address", metavar="ADDR", help="D-Bus address instead of the system bus"
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to wait for ibgwd (%(default)gs)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser("status", help="show state, readiness, ports and components")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("reload", help="re-read settings; restart only what changed; wait until done")
    restart = sub.add_parser("restart", help="restart gateways (soft via IBC unless --hard)")
    restart.add_argument("--hard", action="store_true", help="restart the IBC unit (new login)")
    restart.add_argument("--mode", choices=modes, default="", help="one gateway (default: all)")
    reconnect = sub.add_parser("reconnect", help="reconnect market data or the account server")
    reconnect.add_argument("what", choices=["data", "account"])
    reconnect.add_argument("--mode", choices=modes, default="", help="one gateway (default: all)")
    return parser


def main(
    argv: Sequence[str] | None = None,
    connect: Callable[[argparse.Namespace], Manager] | None = None,
) -> int:
    """Entry point of `ibgwdctl` and `ibgwd ctl`; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EX_OK if exc.code == 0 else EX_USAGE
    connector = connect or (
        lambda a: DBusManager(a.instance, a.bus_address, min(a.timeout, DEFAULT_TIMEOUT_S))
    )
    try:
        return run(args, connector(args), sys.stdout)
    except CtlError as exc:
        print(f"ibgwdctl: {exc}", file=sys.stderr)
        return exc.exit_code
