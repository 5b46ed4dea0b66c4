"""The validated settings model: frozen dataclasses and enums, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ibgwd.config.secrets import Secret


class TradingMode(enum.Enum):
    LIVE = "live"
    PAPER = "paper"
    BOTH = "both"

    @property
    def modes(self) -> tuple[Mode, ...]:
        if self is TradingMode.BOTH:
            return (Mode.LIVE, Mode.PAPER)
        return (Mode(self.value),)


class Mode(enum.Enum):
    """One running gateway: live or paper."""

    LIVE = "live"
    PAPER = "paper"


class SshTunnel(enum.Enum):
    OFF = ""
    YES = "yes"  # ssh only, no relay
    BOTH = "both"  # relay and ssh


@dataclass(frozen=True)
class Credentials:
    user: str
    password: Secret
    source: str = "TWS_USERID / TWS_PASSWORD"  # the settings they came from (for messages)


@dataclass(frozen=True)
class GatewaySettings:
    """Everything that differs between the live and the paper gateway of one instance."""

    mode: Mode
    credentials: Credentials
    api_port: int  # the Gateway's own API port (OverrideTwsApiPort), loopback only
    relay_port: int  # socat relay port (4003 live / 4004 paper), 0 = no relay
    command_port: int  # IBC command server port on 127.0.0.1
    settings_path: str  # TWS_SETTINGS_PATH (with _live/_paper suffix in dual mode)
    ssh_remote_port: int  # remote port on the bastion that forwards to this gateway's API


@dataclass(frozen=True)
class SshSettings:
    tunnel: SshTunnel
    user_tunnel: str  # user@host
    options: str
    alive_interval: int
    alive_count: int
    restart_s: int
    vnc_port: int  # 0 = no VNC forward; remote port on the bastion forwarding to local VNC
    passphrase: Secret | None
    key_dir: str  # directory holding id_* keys and known_hosts


@dataclass(frozen=True)
class Settings:
    instance: str
    trading_mode: TradingMode
    gateways: tuple[GatewaySettings, ...]  # one per mode, live first
    # IBC config.ini pass-through (old image names in comments)
    read_only_api: bool | None  # READ_ONLY_API
    accept_incoming: str  # TWS_ACCEPT_INCOMING: accept|reject|manual
    master_client_id: int | None  # TWS_MASTER_CLIENT_ID
    twofa_timeout_action: str  # TWOFA_TIMEOUT_ACTION: exit|restart
    twofa_device: str  # TWOFA_DEVICE
    twofa_exit_interval: int  # TWOFA_EXIT_INTERVAL
    bypass_warning: bool | None  # BYPASS_WARNING
    auto_restart_time: str  # AUTO_RESTART_TIME "hh:mm AM|PM" or ""
    auto_logoff_time: str  # AUTO_LOGOFF_TIME
    cold_restart_time: str  # TWS_COLD_RESTART "hh:mm" or ""
    save_tws_settings: str  # SAVE_TWS_SETTINGS
    relogin_after_twofa_timeout: bool  # RELOGIN_AFTER_TWOFA_TIMEOUT
    existing_session_action: str  # EXISTING_SESSION_DETECTED_ACTION
    allow_blind_trading: bool  # ALLOW_BLIND_TRADING
    time_zone: str  # TIME_ZONE (also TZ of the gateway)
    custom_config: bool  # CUSTOM_CONFIG=yes: render nothing
    java_heap_mb: int | None  # JAVA_HEAP_SIZE
    # Install locations
    ibc_path: str  # IBC_PATH
    tws_path: str  # TWS_PATH
    gateway_version: str  # IB_GATEWAY_VERSION (directory name under TWS_PATH/ibgateway)
    # Hooks (directories of *.sh run at the old image's points)
    start_scripts: str
    x_scripts: str
    ibc_scripts: str
    # Display and VNC
    display: int  # X display number
    vnc_password: Secret | None  # VNC_SERVER_PASSWORD; None = VNC off
    vnc_bind_address: str
    vnc_port: int
    # Relay
    relay_bind_address: str
    relay_allow: tuple[str, ...]  # allowed client addresses/CIDRs; empty = everyone
    # SSH tunnel
    ssh: SshSettings
    # Health and recovery
    metrics_address: str  # host:port or [v6]:port; "" = off
    probe_interval_s: float
    probe_timeout_s: float
    probe_failure_threshold: int
    probe_client_id: int
    login_timeout_s: float  # grace for login + 2FA before recovery starts
    recovery_max_per_hour: int
    recovery_backoff_s: float
    shutdown_action: str = ""  # SHUTDOWN_ACTION: pause|stop at a system shutdown; "" = derived
    # Notifications (NOTIFY_*)
    notify_url: Secret | None = None
    notify_topic: str = ""
    notify_command: str = ""
    notify_after_s: float = 300.0

    def gateway(self, mode: Mode) -> GatewaySettings:
        for g in self.gateways:
            if g.mode is mode:
                return g
        raise KeyError(mode)

    @property
    def vnc_enabled(self) -> bool:
        return self.vnc_password is not None and bool(self.vnc_password)

    @property
    def relay_enabled(self) -> bool:
        return self.ssh.tunnel is not SshTunnel.YES

    @property
    def tunnel_enabled(self) -> bool:
        return self.ssh.tunnel is not SshTunnel.OFF
