"""ibgwdctl: status, readiness, logs, screenshots, reload, restart and reconnect of ibgwd.

Exit status (as systemctl): 0 ok (for status, is-ready and wait: ready); 1 the call failed;
3 not ready; 64 bad usage; 69 ibgwd (or the bus) is not there; 77 access denied; 78 reload
refused because the new configuration is invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TextIO

from ibgwd import __version__
from ibgwd.config.model import Mode
from ibgwd.errors import EX_CONFIG, EX_NOPERM, EX_OK, EX_UNAVAILABLE, EX_USAGE
from ibgwd.names import (
    BUS_NAME_PREFIX,
    DEFAULT_INSTANCE,
    ERROR_NAMESPACE,
    INSTANCE_ACCEPTED,
    MANAGER_INTERFACE,
    OBJECT_PATH,
    InstanceNames,
    is_valid_instance,
)

EX_FAILED = 1
EX_NOT_READY = 3  # systemctl's "not active", for status, is-ready and wait
DIAGNOSTICS_PATH = OBJECT_PATH + "/Diagnostics"
DIAGNOSTICS_INTERFACE = BUS_NAME_PREFIX + ".Diagnostics"
DEFAULT_WAIT_S = 300.0  # wait / restart --wait: a soft restart takes a minute or two
COMPONENTS = ("display", "vnc", "ibc", "relay", "tunnel", "hook", "notify")
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

    def restart(self, mode: str, hard: bool, timeout_s: float) -> str: ...

    def reconnect(self, what: str, mode: str, timeout_s: float) -> None: ...

    def screenshot(self, timeout_s: float) -> bytes: ...

    def test_notification(self, timeout_s: float) -> tuple[bool, str]: ...


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

    def restart(self, mode: str, hard: bool, timeout_s: float) -> str:
        ms = int(timeout_s * 1000)
        return str(self._call(lambda: self._manager.Restart(mode, hard, timeout=ms)) or "")

    def reconnect(self, what: str, mode: str, timeout_s: float) -> None:
        ms = int(timeout_s * 1000)
        method = self._manager.ReconnectData if what == "data" else self._manager.ReconnectAccount
        self._call(lambda: method(mode, timeout=ms))

    def screenshot(self, timeout_s: float) -> bytes:
        ms = int(timeout_s * 1000)
        proxy = self._bus.get_proxy(self.names.bus_name, DIAGNOSTICS_PATH, DIAGNOSTICS_INTERFACE)
        return bytes(self._call(lambda: proxy.Screenshot(timeout=ms)))

    def test_notification(self, timeout_s: float) -> tuple[bool, str]:
        ms = int(timeout_s * 1000)
        proxy = self._bus.get_proxy(self.names.bus_name, DIAGNOSTICS_PATH, DIAGNOSTICS_INTERFACE)
        ok, detail = self._call(lambda: proxy.TestNotification(timeout=ms))
        return bool(ok), str(detail)


def list_instances(address: str | None) -> list[str]:
    """Instance names of every ibgwd on the bus (their well-known names)."""
    from dasbus.connection import AddressedMessageBus, SystemMessageBus

    where = address or "the system bus"
    try:
        bus = AddressedMessageBus(address) if address else SystemMessageBus()
        names = list(bus.proxy.ListNames())
    except Exception as exc:
        raise CtlError(f"cannot connect to {where}: {_plain(exc)}", EX_UNAVAILABLE) from exc
    prefix = BUS_NAME_PREFIX + "."
    return sorted(n.removeprefix(prefix) for n in names if n.startswith(prefix))


def _plain(exc: BaseException) -> str:
    text = str(exc)
    if text.startswith("GDBus.Error:"):  # GLib's "GDBus.Error:<name>: <message>"
        text = text.split(": ", 1)[-1]
    if text.startswith("g-io-error-quark: "):  # "g-io-error-quark: Could not connect: … (1)"
        text = text.removeprefix("g-io-error-quark: ").rsplit(" (", 1)[0]
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
            "twofa_deadline_timestamp": props.get("TwoFactorDeadline", {}).get(mode, 0.0),
            "next_restart_timestamp": props.get("NextRestart", {}).get(mode, 0.0),
            "next_full_login_timestamp": props.get("NextFullLogin", {}).get(mode, 0.0),
            "restart_reason": props.get("RestartReason", {}).get(mode, ""),
            "read_only_api": props.get("ReadOnlyApi", {}).get(mode, ""),
            "login_failures": props.get("LoginFailures", {}).get(mode, 0),
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
        deadline = float(g["twofa_deadline_timestamp"] or 0.0)
        if deadline and g["state"] == "waiting_2fa":
            left = f"{_span(deadline - now)} left" if deadline > now else "expired"
            lines.append(f"            approve the login in IBKR Mobile ({left})")
        plans = []
        for key, what in (
            ("next_restart_timestamp", "restart"),
            ("next_full_login_timestamp", "full login (2FA)"),
        ):
            ts = float(g[key] or 0.0)
            if ts > now:
                plans.append(f"{what} {time.strftime('%a %H:%M', tz(ts))} (in {_span(ts - now)})")
        if plans:
            lines.append("            next: " + "; ".join(plans))
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


# --- colour (systemctl's conventions: only on a terminal, never with NO_COLOR) ---


def use_colour(stream: TextIO, environ: Mapping[str, str]) -> bool:
    if "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return False
    forced = environ.get("SYSTEMD_COLORS", "").lower()
    if forced in ("0", "false", "no", "off"):
        return False
    if forced in ("1", "true", "yes", "on", "16", "256", "24bit"):
        return True
    return stream.isatty()


_COLOURS = {"green": "\033[0;1;32m", "yellow": "\033[0;1;33m", "red": "\033[0;1;31m"}
_RESET = "\033[0m"


def state_colour(state: str, ready: bool) -> str:
    if ready:
        return "green"
    if state in ("failed", "rate_limited", "degraded", "recovering", "login_failed"):
        return "red"
    return "yellow"


def colourize(text: str, props: Mapping[str, Any]) -> str:
    """Colour the status's bullet and state word like systemctl does."""
    colour = _COLOURS[state_colour(str(props.get("State", "")), bool(props.get("Ready", False)))]
    lines = text.split("\n")
    lines[0] = lines[0].replace("●", f"{colour}●{_RESET}", 1)
    state = str(props.get("State", ""))
    if state and len(lines) > 1:
        lines[1] = lines[1].replace(f"State: {state}", f"State: {colour}{state}{_RESET}", 1)
    return "\n".join(lines)


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


def is_ready(props: Mapping[str, Any], mode: str) -> bool:
    """The instance (mode "") or one gateway is ready."""
    if not mode:
        return bool(props.get("Ready", False))
    return str(props.get("GatewayStates", {}).get(mode, "")) == "ready"


def wait_ready(
    get_props: Callable[[], Mapping[str, Any]],
    mode: str,
    timeout_s: float,
    *,
    leave_first: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll until ready (after having been seen not ready, with `leave_first`); False on timeout.

    ibgwd not being there yet counts as not ready: `wait` may run before the daemon started.
    """
    deadline = clock() + timeout_s
    left = not leave_first
    while True:
        try:
            ready = is_ready(get_props(), mode)
        except CtlError as exc:
            if exc.exit_code != EX_UNAVAILABLE:
                raise
            ready = False
        if not ready:
            left = True
        elif left:
            return True
        if clock() >= deadline:
            return False
        sleep(POLL_INTERVAL_S * 5)


def journal_command(
    instance: str, component: str, mode: str, follow: bool, lines: int | None
) -> list[str]:
    """journalctl over the instance's service and its transient units."""
    names = InstanceNames(instance)
    argv = ["journalctl", "--no-hostname", "-o", "short-iso"]
    if component:
        suffix = f"-{mode}" if mode and component in ("ibc", "relay", "tunnel") else "*"
        argv += ["-u", f"{names.unit_prefix()}{component}{suffix}"]
        if suffix != "*":
            argv[-1] += ".service"
    elif mode:
        argv += ["-u", names.service, "-u", f"{names.unit_prefix()}*-{mode}.service"]
    else:
        argv += ["-u", names.service, "-u", f"{names.unit_prefix()}*"]
    if lines is not None:
        argv += ["-n", str(lines)]
    if follow:
        argv.append("-f")
    return argv


def recent_log(instance: str, lines: int) -> str:
    """The last journal lines of the instance, as `systemctl status` shows them; "" when the
    journal is not readable (it needs root or group systemd-journal)."""
    argv = journal_command(instance, "", "", follow=False, lines=lines)
    argv[1:1] = ["--no-pager", "--quiet"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    if r.returncode != 0 or not r.stdout.strip():
        return ""
    return "\n" + r.stdout


def run_logs(args: argparse.Namespace) -> int:
    argv = journal_command(args.instance, args.component, args.mode, args.follow, args.lines)
    if shutil.which(argv[0]) is None:
        raise CtlError("journalctl not found: logs need systemd's journal", EX_UNAVAILABLE)
    if not sys.stdout.isatty():
        argv.insert(1, "--no-pager")
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return EX_OK


def write_screenshot(png: bytes, output: str, out: TextIO) -> None:
    if output == "-":
        stream = getattr(out, "buffer", None)
        if stream is None:
            raise CtlError("cannot write binary data to this stdout", EX_FAILED)
        stream.write(png)
        stream.flush()
        return
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(png)
    except OSError as exc:
        raise CtlError(f"cannot write {output}: {exc.strerror or exc}", 73) from exc
    print(f"screenshot written to {output} ({len(png)} bytes)", file=sys.stderr)


def run(args: argparse.Namespace, manager: Manager, out: TextIO) -> int:
    """Execute one parsed command against `manager`."""
    if args.command == "status":
        props = manager.properties()
        if args.json:
            out.write(json.dumps(status_json(props), indent=2, sort_keys=True) + "\n")
        else:
            text = format_status(props, now=time.time())
            if use_colour(out, os.environ):
                text = colourize(text, props)
            out.write(text)
            if out.isatty() and args.lines:
                out.write(recent_log(args.instance, args.lines))
        return EX_OK if is_ready(props, "") else EX_NOT_READY
    if args.command == "is-ready":
        props = manager.properties()
        ready = is_ready(props, args.mode)
        if args.json:
            out.write(json.dumps({"ready": ready, "state": props.get("State", "")}) + "\n")
        return EX_OK if ready else EX_NOT_READY
    if args.command == "screenshot":
        if args.output == "-" and out.isatty():
            raise CtlError("refusing to write a PNG to a terminal: use -o FILE or > FILE", 64)
        write_screenshot(manager.screenshot(args.timeout), args.output, out)
        return EX_OK
    if args.command == "notify-test":
        ok, detail = manager.test_notification(args.timeout)
        if args.json:
            out.write(json.dumps({"delivered": ok, "detail": detail}) + "\n")
        else:
            out.write(f"test notification {'delivered' if ok else 'NOT delivered'}: {detail}\n")
        return EX_OK if ok else EX_FAILED
    if args.command == "reload":
        started = time.monotonic()
        restarted = manager.reload(args.timeout)
        wait_reload_finished(manager, max(args.timeout - (time.monotonic() - started), 0.0))
        if args.json:
            out.write(json.dumps({"restarted": restarted}) + "\n")
        else:
            what = ", ".join(restarted) if restarted else "nothing"
            out.write(f"reloaded; restarted: {what}\n")
    elif args.command == "restart":
        what = manager.restart(args.mode, args.hard, args.timeout)
        kind = "hard" if args.hard else "soft"
        if not args.json:
            out.write(f"{kind} restart of {args.mode or 'all gateways'} requested")
            out.write(f": {what}\n" if what else "\n")
        if args.wait:
            if not wait_ready(manager.properties, args.mode, args.wait_timeout, leave_first=True):
                raise CtlError(
                    f"not ready again within {args.wait_timeout:g}s after the restart",
                    EX_NOT_READY,
                )
            if not args.json:
                out.write("ready again\n")
        if args.json:
            reply = {"restart": kind, "mode": args.mode, "waited": args.wait, "detail": what}
            out.write(json.dumps(reply) + "\n")
    elif args.command == "reconnect":
        manager.reconnect(args.what, args.mode, args.timeout)
        if not args.json:
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


def _lines(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"invalid number of lines {value!r}; accepted: 0, 1, ...")
    return int(value)


EPILOG = """\
with no COMMAND, ibgwdctl runs status

exit status:
  0 ok (status, is-ready, wait: ready), 1 the call failed, 3 not ready, 64 bad usage,
  69 ibgwd or the bus is not there, 73 cannot write the output file, 77 access denied
  (managing needs root or group ibgwd), 78 reload refused: invalid configuration

examples:
  ibgwdctl                              status of the default instance
  ibgwdctl --instance live is-ready     exit 0 when ready, 3 when not (quiet)
  ibgwdctl wait --timeout 600           block until ready (e.g. ExecStartPre= of a bot)
  ibgwdctl logs -f --component ibc      follow IBC's and the Gateway's log
  ibgwdctl screenshot -o gateway.png    what the Gateway shows, without VNC
  ibgwdctl notify-test                  does a notification reach your phone?
  ibgwdctl restart --wait               soft restart (no 2FA), return when ready again
  ibgwdctl --json list                  every instance on the bus"""


def build_parser() -> argparse.ArgumentParser:
    modes = [m.value for m in Mode]
    parser = argparse.ArgumentParser(
        prog="ibgwdctl",
        description="Query and control running ibgwd instances over D-Bus.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
        help="how long to wait for ibgwd's answer (%(default)gs)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    status = sub.add_parser("status", help="show state, readiness, ports and components")
    status.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    status.add_argument(
        "-n",
        "--lines",
        type=_lines,
        default=10,
        metavar="N",
        help="on a terminal, end with the last N journal lines (%(default)s; 0 = none)",
    )
    ready = sub.add_parser("is-ready", help="exit 0 when ready, 3 when not; prints nothing")
    ready.add_argument("--mode", choices=modes, default="", help="one gateway (default: all)")
    wait = sub.add_parser("wait", help="block until ready; exit 3 after the timeout")
    wait.add_argument("--mode", choices=modes, default="", help="one gateway (default: all)")
    wait.add_argument(
        "--timeout",
        dest="wait_timeout",
        type=_positive,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="give up after this long (%(default)gs)",
    )
    sub.add_parser("list", help="list every ibgwd instance on the bus with its state")
    logs = sub.add_parser("logs", help="show the instance's journal (ibgwd, IBC, relay, ...)")
    logs.add_argument("-f", "--follow", action="store_true", help="follow new lines")
    logs.add_argument("-n", "--lines", type=_lines, metavar="N", help="show the last N lines")
    logs.add_argument(
        "--component", choices=COMPONENTS, default="", help="only this component's unit(s)"
    )
    logs.add_argument("--mode", choices=modes, default="", help="only this gateway's units")
    shot = sub.add_parser(
        "screenshot", help="PNG of the Gateway's display (root and group ibgwd only)"
    )
    shot.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="write to FILE (default: stdout)"
    )
    sub.add_parser(
        "notify-test",
        help="send a test notification through NOTIFY_URL / NOTIFY_COMMAND (root, group ibgwd)",
    )
    sub.add_parser("reload", help="re-read settings; restart only what changed; wait until done")
    restart = sub.add_parser("restart", help="restart gateways (soft via IBC unless --hard)")
    restart.add_argument("--hard", action="store_true", help="restart the IBC unit (new login)")
    restart.add_argument("--mode", choices=modes, default="", help="one gateway (default: all)")
    restart.add_argument("--wait", action="store_true", help="return once ready again")
    restart.add_argument(
        "--wait-timeout",
        type=_positive,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="with --wait: give up after this long (%(default)gs)",
    )
    reconnect = sub.add_parser("reconnect", help="reconnect market data or the account server")
    reconnect.add_argument(
        "what", choices=["data", "account"], help="data: market data farms; account: the account"
    )
    reconnect.add_argument("--mode", choices=modes, default="", help="one gateway (default: all)")
    return parser


def _list(args: argparse.Namespace, connect: Callable[[argparse.Namespace], Manager]) -> int:
    rows: list[dict[str, Any]] = []
    for instance in list_instances(args.bus_address):
        try:
            props = connect(argparse.Namespace(**{**vars(args), "instance": instance})).properties()
        except CtlError as exc:
            rows.append(
                {
                    "instance": instance,
                    "state": "unreachable",
                    "ready": False,
                    "status_text": str(exc),
                }
            )
            continue
        rows.append(
            {
                "instance": instance,
                "state": props.get("State", ""),
                "ready": bool(props.get("Ready", False)),
                "status_text": props.get("StatusText", ""),
            }
        )
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return EX_OK
    if not rows:
        print("no ibgwd instance on the bus")
        return EX_OK
    width = max(len("INSTANCE"), *(len(r["instance"]) for r in rows))
    print(f"{'INSTANCE':<{width}}  {'STATE':<12}  STATUS")
    for r in rows:
        print(f"{r['instance']:<{width}}  {r['state']:<12}  {r['status_text']}")
    print(f"\n{len(rows)} instance{'s' if len(rows) != 1 else ''} listed.")
    return EX_OK


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
    if not args.command:
        given = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args([*given, "status"])  # the defaults of `status` too
    args.json = bool(getattr(args, "json", False))
    connector = connect or (
        lambda a: DBusManager(a.instance, a.bus_address, min(a.timeout, DEFAULT_TIMEOUT_S))
    )
    try:
        if args.command == "logs":
            return run_logs(args)
        if args.command == "list":
            return _list(args, connector)
        if args.command == "wait":
            ready = wait_ready(lambda: connector(args).properties(), args.mode, args.wait_timeout)
            if not ready:
                raise CtlError(f"not ready within {args.wait_timeout:g}s", EX_NOT_READY)
            return EX_OK
        return run(args, connector(args), sys.stdout)
    except CtlError as exc:
        print(f"ibgwdctl: {exc}", file=sys.stderr)
        return exc.exit_code
