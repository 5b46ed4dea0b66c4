"""Raw setting strings → the validated Settings model, collecting every problem (pure)."""

from __future__ import annotations

import zlib
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ibgwd import names
from ibgwd.config import spec
from ibgwd.config.kinds import split_host_port
from ibgwd.config.model import (
    Credentials,
    GatewaySettings,
    Mode,
    Settings,
    SshSettings,
    SshTunnel,
    TradingMode,
)
from ibgwd.config.secrets import Secret
from ibgwd.config.sources import REDACTED
from ibgwd.errors import Problem

T = TypeVar("T")
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9108"


def default_display(instance: str) -> int:
    """Display :1 for the default instance (as the old image), a stable spread for others."""
    if instance == names.DEFAULT_INSTANCE:
        return 1
    return 10 + zlib.crc32(instance.encode("utf-8")) % 500


def is_time_zone(name: str) -> bool:
    """True for a name in the tz database (what TIME_ZONE and the Gateway accept)."""
    if not name or name.startswith("/") or ".." in name or "\\" in name or "\0" in name:
        return False
    return name in zoneinfo.available_timezones()


class _Reader:
    """Parses settings one by one, keeping every problem; a bad value falls back to its default."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[Problem] = []

    def raw(self, setting: spec.Setting[Any]) -> str:
        value = self.values.get(setting.name)
        if value is None or (value == "" and setting.empty_is_default):
            return setting.default
        return value

    def get(self, setting: spec.Setting[T]) -> T:
        raw = self.raw(setting)
        try:
            return setting.kind.parse(raw)
        except ValueError as e:
            detail = "" if setting.secret else str(e)
            self.problem(setting, raw, setting.kind.accepted, detail)
            return setting.kind.parse(setting.default)

    def problem(self, setting: spec.Setting[Any], value: str, accepted: str, detail: str) -> None:
        shown = REDACTED if setting.secret and value else value
        problem = Problem(setting.name, shown, accepted, detail)
        if problem not in self.problems:  # a setting read twice reports once
            self.problems.append(problem)


def build(
    instance: str,
    values: Mapping[str, str],
    *,
    installed_versions: Sequence[str] | None,
) -> tuple[Settings, list[Problem]]:
    """Build Settings from raw strings. Always returns a model (with defaults where a value
    was bad) plus the problems; the caller must refuse the model if there are any.

    `installed_versions` lists the directories under TWS_PATH/ibgateway (None: none exist).
    """
    r = _Reader(values)
    s = spec
    state_dir = names.InstanceNames(instance).state_dir

    trading_mode = TradingMode(r.get(s.TRADING_MODE))
    if r.get(s.DUAL_MODE):
        trading_mode = TradingMode.BOTH
    dual = trading_mode is TradingMode.BOTH
    custom_config = r.get(s.CUSTOM_CONFIG)

    tunnel = SshTunnel(r.get(s.SSH_TUNNEL))
    settings_base = r.get(s.TWS_SETTINGS_PATH) or f"{state_dir}/settings"
    ssh_remote_port = r.get(s.SSH_REMOTE_PORT)
    port_settings = {
        Mode.LIVE: (s.API_PORT_LIVE, s.RELAY_PORT_LIVE, s.COMMAND_PORT_LIVE),
        Mode.PAPER: (s.API_PORT_PAPER, s.RELAY_PORT_PAPER, s.COMMAND_PORT_PAPER),
    }
    gateways: list[GatewaySettings] = []
    for index, mode in enumerate(trading_mode.modes):
        api_s, relay_s, command_s = port_settings[mode]
        api_port = r.get(api_s)
        gateways.append(
            GatewaySettings(
                mode=mode,
                credentials=_credentials(r, mode, dual=dual, required=not custom_config),
                api_port=api_port,
                relay_port=0 if tunnel is SshTunnel.YES else r.get(relay_s),
                command_port=r.get(command_s),
                settings_path=f"{settings_base}_{mode.value}" if dual else settings_base,
                ssh_remote_port=(ssh_remote_port or api_port) if index == 0 else api_port,
            )
        )

    vnc_password_text = r.get(s.VNC_SERVER_PASSWORD)
    vnc_password = Secret(vnc_password_text) if vnc_password_text else None
    passphrase_text = r.get(s.SSH_PASSPHRASE)
    ssh = SshSettings(
        tunnel=tunnel,
        user_tunnel=r.get(s.SSH_USER_TUNNEL),
        options=r.get(s.SSH_OPTIONS),
        alive_interval=r.get(s.SSH_ALIVE_INTERVAL),
        alive_count=r.get(s.SSH_ALIVE_COUNT),
        restart_s=r.get(s.SSH_RESTART),
        vnc_port=r.get(s.SSH_VNC_PORT) or 0,
        passphrase=Secret(passphrase_text) if passphrase_text else None,
        key_dir=r.get(s.SSH_KEY_DIR) or f"{state_dir}/ssh",
    )
    if tunnel is not SshTunnel.OFF:
        _check_tunnel(r, ssh, gateways, vnc_enabled=vnc_password is not None)

    if s.METRICS_ADDRESS.name in values:
        metrics_address = r.get(s.METRICS_ADDRESS)
    else:
        metrics_address = DEFAULT_METRICS_ADDRESS if instance == names.DEFAULT_INSTANCE else ""

    time_zone = r.get(s.TIME_ZONE).strip()
    if not is_time_zone(time_zone):
        r.problem(s.TIME_ZONE, time_zone, s.TIME_ZONE.kind.accepted, "not in the tz database")
        time_zone = s.TIME_ZONE.default

    master_client_id = r.get(s.TWS_MASTER_CLIENT_ID)
    probe_client_id = r.get(s.PROBE_CLIENT_ID)
    if master_client_id is not None and probe_client_id == master_client_id:
        r.problem(
            s.PROBE_CLIENT_ID,
            str(probe_client_id),
            "a client id other than 0 and TWS_MASTER_CLIENT_ID",
            "equals TWS_MASTER_CLIENT_ID",
        )
    probe_interval_s = r.get(s.PROBE_INTERVAL)
    probe_timeout_s = r.get(s.PROBE_TIMEOUT)
    if probe_timeout_s > probe_interval_s:
        r.problem(
            s.PROBE_TIMEOUT,
            r.raw(s.PROBE_TIMEOUT),
            f"at most PROBE_INTERVAL ({probe_interval_s:g} s)",
            "longer than the probe interval",
        )

    settings = Settings(
        instance=instance,
        trading_mode=trading_mode,
        gateways=tuple(gateways),
        read_only_api=r.get(s.READ_ONLY_API),
        accept_incoming=r.get(s.TWS_ACCEPT_INCOMING),
        master_client_id=master_client_id,
        twofa_timeout_action=r.get(s.TWOFA_TIMEOUT_ACTION),
        twofa_device=r.get(s.TWOFA_DEVICE),
        twofa_exit_interval=r.get(s.TWOFA_EXIT_INTERVAL),
        bypass_warning=r.get(s.BYPASS_WARNING),
        auto_restart_time=r.get(s.AUTO_RESTART_TIME),
        auto_logoff_time=r.get(s.AUTO_LOGOFF_TIME),
        cold_restart_time=r.get(s.TWS_COLD_RESTART),
        save_tws_settings=r.get(s.SAVE_TWS_SETTINGS),
        relogin_after_twofa_timeout=r.get(s.RELOGIN_AFTER_TWOFA_TIMEOUT),
        existing_session_action=r.get(s.EXISTING_SESSION_DETECTED_ACTION),
        allow_blind_trading=r.get(s.ALLOW_BLIND_TRADING),
        time_zone=time_zone,
        custom_config=custom_config,
        java_heap_mb=r.get(s.JAVA_HEAP_SIZE),
        ibc_path=r.get(s.IBC_PATH),
        tws_path=r.get(s.TWS_PATH),
        gateway_version=_gateway_version(r, installed_versions),
        start_scripts=_hook_dir(r.get(s.START_SCRIPTS), state_dir),
        x_scripts=_hook_dir(r.get(s.X_SCRIPTS), state_dir),
        ibc_scripts=_hook_dir(r.get(s.IBC_SCRIPTS), state_dir),
        display=_display(r, instance),
        vnc_password=vnc_password,
        vnc_bind_address=r.get(s.VNC_BIND_ADDRESS),
        vnc_port=r.get(s.VNC_PORT),
        relay_bind_address=r.get(s.RELAY_BIND_ADDRESS),
        relay_allow=r.get(s.RELAY_ALLOW),
        ssh=ssh,
        metrics_address=metrics_address,
        probe_interval_s=probe_interval_s,
        probe_timeout_s=probe_timeout_s,
        probe_failure_threshold=r.get(s.PROBE_FAILURES),
        probe_client_id=probe_client_id,
        login_timeout_s=r.get(s.LOGIN_TIMEOUT),
        recovery_max_per_hour=r.get(s.RECOVERY_MAX_PER_HOUR),
        recovery_backoff_s=r.get(s.RECOVERY_BACKOFF),
        shutdown_action=r.get(s.SHUTDOWN_ACTION),
        notify_url=Secret(r.get(s.NOTIFY_URL)) if r.get(s.NOTIFY_URL) else None,
        notify_topic=r.get(s.NOTIFY_TOPIC).strip(),
        notify_command=r.get(s.NOTIFY_COMMAND).strip(),
        notify_after_s=r.get(s.NOTIFY_AFTER),
    )
    _check_port_collisions(r, settings)
    return settings, r.problems


def _credentials(r: _Reader, mode: Mode, *, dual: bool, required: bool) -> Credentials:
    s = spec
    user_s, password_s = s.TWS_USERID, s.TWS_PASSWORD
    if mode is Mode.PAPER and (dual or r.get(s.TWS_USERID_PAPER)):
        user_s, password_s = s.TWS_USERID_PAPER, s.TWS_PASSWORD_PAPER
    user, password = r.get(user_s), r.get(password_s)
    if required:
        why = f"required for the {mode.value} gateway"
        if not user:
            r.problem(user_s, "", "a non-empty IB user name", why)
        if not password:
            accepted = (
                f"a non-empty password in {password_s.name}, {password_s.file_name} "
                f"or the credential {password_s.credential_name}"
            )
            r.problem(password_s, "", accepted, why)
    return Credentials(
        user=user, password=Secret(password), source=f"{user_s.name} / {password_s.name}"
    )


def _check_tunnel(
    r: _Reader, ssh: SshSettings, gateways: Sequence[GatewaySettings], *, vnc_enabled: bool
) -> None:
    s = spec
    if not ssh.user_tunnel:
        r.problem(
            s.SSH_USER_TUNNEL,
            "",
            s.SSH_USER_TUNNEL.kind.accepted,
            "required when SSH_TUNNEL is set",
        )
    if ssh.vnc_port and not vnc_enabled:
        r.problem(
            s.SSH_VNC_PORT,
            str(ssh.vnc_port),
            "empty unless VNC_SERVER_PASSWORD is set",
            "there is no VNC server to forward to",
        )
    remote: dict[int, str] = {}
    entries = [(g.ssh_remote_port, f"remote port of the {g.mode.value} gateway") for g in gateways]
    if ssh.vnc_port:
        entries.append((ssh.vnc_port, "SSH_VNC_PORT"))
    for port, what in entries:
        if port in remote:
            r.problem(
                s.SSH_REMOTE_PORT,
                str(port),
                "distinct remote ports on the bastion",
                f"{what} is also the {remote[port]}",
            )
        remote.setdefault(port, what)


def _check_port_collisions(r: _Reader, settings: Settings) -> None:
    """Every port ibgwd listens on (or makes the Gateway/IBC listen on) must be distinct."""
    s = spec
    by_mode = {
        Mode.LIVE: (s.API_PORT_LIVE, s.RELAY_PORT_LIVE, s.COMMAND_PORT_LIVE),
        Mode.PAPER: (s.API_PORT_PAPER, s.RELAY_PORT_PAPER, s.COMMAND_PORT_PAPER),
    }
    used: list[tuple[int, spec.Setting[Any]]] = []
    for g in settings.gateways:
        api_s, relay_s, command_s = by_mode[g.mode]
        used += [(g.api_port, api_s), (g.command_port, command_s)]
        if g.relay_port:
            used.append((g.relay_port, relay_s))
    if settings.vnc_enabled:
        used.append((settings.vnc_port, s.VNC_PORT))
    if settings.metrics_address:
        used.append((split_host_port(settings.metrics_address)[1], s.METRICS_ADDRESS))
    first: dict[int, spec.Setting[Any]] = {}
    for port, setting in used:
        if port in first:
            r.problem(
                setting,
                str(port),
                "a port no other setting uses",
                f"also used by {first[port].name}",
            )
        else:
            first[port] = setting


def _gateway_version(r: _Reader, installed: Sequence[str] | None) -> str:
    s = spec.IB_GATEWAY_VERSION
    version = r.get(s)
    if version or r.raw(s).strip():  # set (valid, or already reported as bad)
        return version
    where = f"{r.get(spec.TWS_PATH)}/ibgateway"
    if installed is not None and "current" in installed:
        return "current"
    if installed is not None and len(installed) == 1:
        return installed[0]
    if not installed:
        detail = f"no Gateway installed under {where} (see ibgwd install-gateway)"
    else:
        detail = f"several installed under {where}: {', '.join(sorted(installed))}; pick one"
    r.problem(s, "", s.kind.accepted, detail)
    return ""


def _hook_dir(value: str, state_dir: str) -> str:
    if not value or value.startswith("/"):
        return value
    return f"{state_dir}/{value}"


def _display(r: _Reader, instance: str) -> int:
    number = r.get(spec.DISPLAY_NUMBER)
    return default_display(instance) if number is None else number
