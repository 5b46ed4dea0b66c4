"""The one table of every setting: name, kind, default, docs, secrecy and the field it feeds.

Validation (validate.py), the annotated conffile and docs/configuration.md (docs.py) are all
generated from this table, so they cannot drift apart.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ibgwd.config import kinds
from ibgwd.config.kinds import Kind

T = TypeVar("T")


class Section(enum.Enum):
    CREDENTIALS = "Credentials"
    MODE = "Trading mode and IBC behaviour"
    RESTARTS = "Daily and weekly restarts"
    INSTALL = "Install locations and files"
    PORTS = "Ports"
    DISPLAY = "Display and VNC"
    RELAY = "API relay"
    SSH = "SSH tunnel"
    HEALTH = "Health, metrics and recovery"
    HOOKS = "Hook scripts"
    NOTIFY = "Notifications"


class Origin(enum.Enum):
    IMAGE = "ib-gateway-docker"  # same name, default and meaning as the old image
    IBGWD = "ibgwd"  # new in ibgwd


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting. `default` is the raw value used when unset ("" = none or derived)."""

    name: str
    kind: Kind[T]
    default: str
    description: str
    example: str
    section: Section
    feeds: str  # the Settings field it feeds, e.g. "gateways[live].credentials.user"
    secret: bool = False
    origin: Origin = Origin.IMAGE
    default_doc: str = ""  # shown instead of `default` when the default is derived
    empty_is_default: bool = True  # an explicitly empty value means the default
    differs: str = ""  # how ibgwd differs from the old image, for the migration notes

    @property
    def credential_name(self) -> str:
        """Name of the systemd credential (in $CREDENTIALS_DIRECTORY) carrying this setting."""
        return self.name.lower()

    @property
    def file_name(self) -> str:
        """Name of the variable holding a path whose content is the value."""
        return self.name + "_FILE"

    @property
    def shown_default(self) -> str:
        return self.default_doc or (f"`{self.default}`" if self.default else "(empty)")


_S = Section
_I = Origin.IBGWD
PORT = kinds.Integer(1, 65535)
SECRET_TEXT = kinds.Text("any text (spaces at either end are kept)")

# --- Credentials -------------------------------------------------------------------------
TWS_USERID = Setting(
    "TWS_USERID",
    kinds.Text(),
    "",
    "IB user name of the live gateway, and of the paper "
    "gateway in `TRADING_MODE=paper` unless TWS_USERID_PAPER is set.",
    "myuser",
    _S.CREDENTIALS,
    "gateways[live|paper].credentials.user",
)
TWS_PASSWORD = Setting(
    "TWS_PASSWORD",
    SECRET_TEXT,
    "",
    "Password for TWS_USERID.",
    "correct horse",
    _S.CREDENTIALS,
    "gateways[live|paper].credentials.password",
    secret=True,
)
TWS_USERID_PAPER = Setting(
    "TWS_USERID_PAPER",
    kinds.Text(),
    "",
    "IB user name of the paper gateway. Required with "
    "`TRADING_MODE=both`; optional with `paper` (falls back to TWS_USERID).",
    "mypaperuser",
    _S.CREDENTIALS,
    "gateways[paper].credentials.user",
)
TWS_PASSWORD_PAPER = Setting(
    "TWS_PASSWORD_PAPER",
    SECRET_TEXT,
    "",
    "Password for TWS_USERID_PAPER.",
    "battery staple",
    _S.CREDENTIALS,
    "gateways[paper].credentials.password",
    secret=True,
)
# --- Trading mode and IBC ----------------------------------------------------------------
TRADING_MODE = Setting(
    "TRADING_MODE",
    kinds.Choice(("live", "paper", "both")),
    "paper",
    "Which gateway(s) to run: `live`, `paper`, or `both` side by side (dual mode, each with "
    "its own ports, settings directory, relay and health).",
    "both",
    _S.MODE,
    "trading_mode",
)
DUAL_MODE = Setting(
    "DUAL_MODE",
    kinds.YesNo(),
    "no",
    "`yes` is the same as `TRADING_MODE=both`.",
    "yes",
    _S.MODE,
    "trading_mode",
)
READ_ONLY_API = Setting(
    "READ_ONLY_API",
    kinds.OptionalYesNo(),
    "",
    "IBC `ReadOnlyApi`: `yes` stops API clients from placing, modifying or cancelling "
    "orders; `no` lets them trade. Empty leaves the Gateway's own setting, which is read-only "
    "on a fresh install (every order then fails with error 321): check-config warns.",
    "yes",
    _S.MODE,
    "read_only_api",
)
TWS_ACCEPT_INCOMING = Setting(
    "TWS_ACCEPT_INCOMING",
    kinds.Choice(("accept", "reject", "manual")),
    "manual",
    "IBC `AcceptIncomingConnectionAction`: what to do with API connections from addresses "
    "the Gateway does not trust.",
    "accept",
    _S.MODE,
    "accept_incoming",
)
TWS_MASTER_CLIENT_ID = Setting(
    "TWS_MASTER_CLIENT_ID",
    kinds.OptionalInteger(0, 2147483647),
    "",
    "IBC `OverrideTwsMasterClientID`; empty leaves the Gateway's setting unchanged.",
    "100",
    _S.MODE,
    "master_client_id",
)
TWOFA_TIMEOUT_ACTION = Setting(
    "TWOFA_TIMEOUT_ACTION",
    kinds.Choice(("exit", "restart")),
    "exit",
    "What IBC does when second-factor authentication times out (`ibcstart.sh --on2fatimeout`).",
    "restart",
    _S.MODE,
    "twofa_timeout_action",
)
TWOFA_DEVICE = Setting(
    "TWOFA_DEVICE",
    kinds.Text(),
    "",
    "IBC `SecondFactorDevice`: the exact list entry to pick when several 2FA devices exist.",
    "IB Key",
    _S.MODE,
    "twofa_device",
)
TWOFA_EXIT_INTERVAL = Setting(
    "TWOFA_EXIT_INTERVAL",
    kinds.Integer(1, 3600, unit="seconds"),
    "60",
    "IBC `SecondFactorAuthenticationExitInterval`: seconds to wait for login after the 2FA "
    "alert was acknowledged.",
    "120",
    _S.MODE,
    "twofa_exit_interval",
)
RELOGIN_AFTER_TWOFA_TIMEOUT = Setting(
    "RELOGIN_AFTER_TWOFA_TIMEOUT",
    kinds.YesNo(),
    "no",
    "IBC `ReloginAfterSecondFactorAuthenticationTimeout`: start the login again when the 2FA "
    "prompt times out.",
    "yes",
    _S.MODE,
    "relogin_after_twofa_timeout",
)
BYPASS_WARNING = Setting(
    "BYPASS_WARNING",
    kinds.OptionalYesNo(),
    "",
    "Written to all nine IBC `Bypass*` API precaution settings.",
    "yes",
    _S.MODE,
    "bypass_warning",
)
EXISTING_SESSION_DETECTED_ACTION = Setting(
    "EXISTING_SESSION_DETECTED_ACTION",
    kinds.Choice(("primary", "primaryoverride", "secondary", "manual")),
    "primary",
    "IBC `ExistingSessionDetectedAction`: what happens when the account logs in elsewhere.",
    "primaryoverride",
    _S.MODE,
    "existing_session_action",
)
ALLOW_BLIND_TRADING = Setting(
    "ALLOW_BLIND_TRADING",
    kinds.YesNo(),
    "no",
    "IBC `AllowBlindTrading`: accept orders for instruments without market data.",
    "yes",
    _S.MODE,
    "allow_blind_trading",
)
SAVE_TWS_SETTINGS = Setting(
    "SAVE_TWS_SETTINGS",
    kinds.SaveSchedule(),
    "",
    "IBC `SaveTwsSettingsAt`: when the Gateway saves its settings.",
    "Every 30 mins",
    _S.MODE,
    "save_tws_settings",
)
CUSTOM_CONFIG = Setting(
    "CUSTOM_CONFIG",
    kinds.YesNo(),
    "no",
    "`yes`: render neither config.ini nor jts.ini; you provide both (credentials are then "
    "not required here): IBC reads `/var/lib/ibgwd/<instance>/ibc/config-<mode>.ini` (readable "
    "by user ibgateway; it must set CommandServerPort and OverrideTwsApiPort to this "
    "instance's COMMAND_PORT_* and API_PORT_*), the Gateway reads jts.ini in TWS_SETTINGS_PATH.",
    "yes",
    _S.MODE,
    "custom_config",
    differs="Accepted case-insensitively (`YES` counts); the old image took only `yes`.",
)
# --- Restarts ----------------------------------------------------------------------------
AUTO_RESTART_TIME = Setting(
    "AUTO_RESTART_TIME",
    kinds.Time12(),
    "",
    "IBC `AutoRestartTime`: the Gateway's daily "
    "soft restart (no 2FA until the weekly reset), local time of TIME_ZONE. Write it without "
    "quotes. Always given to IBC, so ibgwd knows when the Gateway restarts (status, D-Bus "
    "`NextRestart`, metrics) and IBC puts it back at each login after a soft restart.",
    "11:45 PM",
    _S.RESTARTS,
    "auto_restart_time",
    default_doc="`11:45 PM` (the Gateway's own default); none when AUTO_LOGOFF_TIME is set",
    differs="Validated: a quoted value is refused instead of silently becoming a logoff. "
    "Empty means the Gateway's own 11:45 PM, written to config.ini.",
)
AUTO_LOGOFF_TIME = Setting(
    "AUTO_LOGOFF_TIME",
    kinds.Time12(),
    "",
    "IBC `AutoLogoffTime`: a daily shutdown without "
    "restart (the next start is a full login). Ignored by IBC when AUTO_RESTART_TIME is set; "
    "when set, AUTO_RESTART_TIME has no default.",
    "11:50 PM",
    _S.RESTARTS,
    "auto_logoff_time",
)
TWS_COLD_RESTART = Setting(
    "TWS_COLD_RESTART",
    kinds.Time24(),
    "",
    "IBC `ColdRestartTime`: Sunday full restart with "
    "a new login (and 2FA), local time of TIME_ZONE.",
    "07:05",
    _S.RESTARTS,
    "cold_restart_time",
)
TIME_ZONE = Setting(
    "TIME_ZONE",
    kinds.Text("a tz database name, e.g. Etc/UTC or America/New_York"),
    "Etc/UTC",
    "Time zone of the Gateway (`TimeZone` in jts.ini, written only when jts.ini does not "
    "exist yet) and TZ of its process.",
    "America/New_York",
    _S.RESTARTS,
    "time_zone",
)
# --- Install locations and files ---------------------------------------------------------
IBC_PATH = Setting(
    "IBC_PATH",
    kinds.AbsolutePath(),
    "/opt/ibgwd/ibc/current",
    "Directory where IBC is installed (`ibgwd install-gateway` points `current` at the newest).",
    "/opt/ibc",
    _S.INSTALL,
    "ibc_path",
    differs="The old image used /home/ibgateway/ibc.",
)
TWS_PATH = Setting(
    "TWS_PATH",
    kinds.AbsolutePath(),
    "/opt/ibgwd",
    "Directory holding `ibgateway/<version>/` installs of IB Gateway.",
    "/opt/ibgateway",
    _S.INSTALL,
    "tws_path",
    differs="The old image used /home/ibgateway/Jts.",
)
IB_GATEWAY_VERSION = Setting(
    "IB_GATEWAY_VERSION",
    kinds.DirName(),
    "",
    "Which installed Gateway to run: a directory name under TWS_PATH/ibgateway.",
    "10.37.1o",
    _S.INSTALL,
    "gateway_version",
    default_doc=(
        "`current` if TWS_PATH/ibgateway/current exists (made by `ibgwd install-gateway`), else "
        "the only directory there; required if there are several"
    ),
)
TWS_SETTINGS_PATH = Setting(
    "TWS_SETTINGS_PATH",
    kinds.AbsolutePath(optional=True),
    "",
    "The Gateway's settings "
    "directory (jts.ini and per-user settings). With `TRADING_MODE=both`, `_live` and "
    "`_paper` are appended.",
    "/srv/ibgateway/settings",
    _S.INSTALL,
    "gateways[].settings_path",
    default_doc="`/var/lib/ibgwd/<instance>/settings`",
    differs="Default is under the instance state directory instead of the Gateway install.",
)
JAVA_HEAP_SIZE = Setting(
    "JAVA_HEAP_SIZE",
    kinds.OptionalInteger(128, 262144, unit="MiB"),
    "",
    "Maximum Java heap of the Gateway in MiB (`-Xmx`); empty keeps the Gateway's own (768 MiB).",
    "1024",
    _S.INSTALL,
    "java_heap_mb",
)
# --- Ports -------------------------------------------------------------------------------
API_PORT_LIVE = Setting(
    "API_PORT_LIVE",
    PORT,
    "4001",
    "The live Gateway's own API port (IBC `OverrideTwsApiPort`). The Gateway listens on all "
    'addresses and cannot be told otherwise: keep its "Allow connections from localhost '
    'only" ticked, TWS_ACCEPT_INCOMING at `manual` or `reject`, and let clients use the relay.',
    "4001",
    _S.PORTS,
    "gateways[live].api_port",
    origin=_I,
)
API_PORT_PAPER = Setting(
    "API_PORT_PAPER",
    PORT,
    "4002",
    "The paper Gateway's own API port; it listens on all addresses, as API_PORT_LIVE.",
    "4002",
    _S.PORTS,
    "gateways[paper].api_port",
    origin=_I,
)
RELAY_PORT_LIVE = Setting(
    "RELAY_PORT_LIVE",
    kinds.Integer(0, 65535),
    "4003",
    "Relay port that API clients use for the live gateway (0 = no relay for live).",
    "4003",
    _S.PORTS,
    "gateways[live].relay_port",
    origin=_I,
)
RELAY_PORT_PAPER = Setting(
    "RELAY_PORT_PAPER",
    kinds.Integer(0, 65535),
    "4004",
    "Relay port that API clients use for the paper gateway (0 = no relay for paper).",
    "4004",
    _S.PORTS,
    "gateways[paper].relay_port",
    origin=_I,
)
COMMAND_PORT_LIVE = Setting(
    "COMMAND_PORT_LIVE",
    PORT,
    "7462",
    "IBC command server port of the live gateway "
    "(loopback only; used for graceful stop and soft restart).",
    "7462",
    _S.PORTS,
    "gateways[live].command_port",
    origin=_I,
)
COMMAND_PORT_PAPER = Setting(
    "COMMAND_PORT_PAPER",
    PORT,
    "7463",
    "IBC command server port of the paper gateway.",
    "7463",
    _S.PORTS,
    "gateways[paper].command_port",
    origin=_I,
)
# --- Display and VNC ---------------------------------------------------------------------
DISPLAY_NUMBER = Setting(
    "DISPLAY_NUMBER",
    kinds.OptionalInteger(0, 9999),
    "",
    "X display number of the virtual screen (Xvfb).",
    "5",
    _S.DISPLAY,
    "display",
    origin=_I,
    default_doc="1 for the instance `default`, else 10 + crc32(instance) % 500",
)
VNC_SERVER_PASSWORD = Setting(
    "VNC_SERVER_PASSWORD",
    SECRET_TEXT,
    "",
    "Password of the VNC server; empty = no VNC server. VNC uses only the first 8 characters.",
    "s3cret",
    _S.DISPLAY,
    "vnc_password",
    secret=True,
    differs="The password never appears on x11vnc's command line.",
)
VNC_BIND_ADDRESS = Setting(
    "VNC_BIND_ADDRESS",
    kinds.IpAddress(),
    "127.0.0.1",
    "Address the VNC server listens on.",
    "0.0.0.0",
    _S.DISPLAY,
    "vnc_bind_address",
    origin=_I,
)
VNC_PORT = Setting(
    "VNC_PORT",
    PORT,
    "5900",
    "Port the VNC server listens on.",
    "5901",
    _S.DISPLAY,
    "vnc_port",
    origin=_I,
)
# --- Relay -------------------------------------------------------------------------------
RELAY_BIND_ADDRESS = Setting(
    "RELAY_BIND_ADDRESS",
    kinds.IpAddress(),
    "127.0.0.1",
    "Address the API relays listen on (`0.0.0.0` or `::` for all; then consider RELAY_ALLOW).",
    "0.0.0.0",
    _S.RELAY,
    "relay_bind_address",
    origin=_I,
)
RELAY_ALLOW = Setting(
    "RELAY_ALLOW",
    kinds.NetworkList(),
    "",
    "Clients allowed to use the relays; empty = everyone who can reach RELAY_BIND_ADDRESS.",
    "10.0.0.0/8,192.0.2.7",
    _S.RELAY,
    "relay_allow",
    origin=_I,
)
# --- SSH tunnel --------------------------------------------------------------------------
SSH_TUNNEL = Setting(
    "SSH_TUNNEL",
    kinds.Choice(("yes", "both"), allow_empty=True),
    "",
    "`yes`: reach the API only through an ssh reverse tunnel (no relay); `both`: relay and "
    "tunnel; empty: relay only.",
    "both",
    _S.SSH,
    "ssh.tunnel",
)
SSH_USER_TUNNEL = Setting(
    "SSH_USER_TUNNEL",
    kinds.UserAtHost(),
    "",
    "Bastion to open the tunnel to. Required when SSH_TUNNEL is set.",
    "tunnel@bastion.example.org",
    _S.SSH,
    "ssh.user_tunnel",
)
SSH_OPTIONS = Setting(
    "SSH_OPTIONS",
    kinds.ShellWords(),
    "",
    "Extra ssh options.",
    "-p 2222",
    _S.SSH,
    "ssh.options",
)
SSH_ALIVE_INTERVAL = Setting(
    "SSH_ALIVE_INTERVAL",
    kinds.Integer(0, 3600, unit="seconds"),
    "20",
    "ssh `ServerAliveInterval`.",
    "30",
    _S.SSH,
    "ssh.alive_interval",
)
SSH_ALIVE_COUNT = Setting(
    "SSH_ALIVE_COUNT",
    kinds.Integer(1, 100),
    "3",
    "ssh `ServerAliveCountMax`.",
    "5",
    _S.SSH,
    "ssh.alive_count",
)
SSH_PASSPHRASE = Setting(
    "SSH_PASSPHRASE",
    SECRET_TEXT,
    "",
    "Passphrase of the ssh key; empty = key without passphrase.",
    "key passphrase",
    _S.SSH,
    "ssh.passphrase",
    secret=True,
    differs="Optional, as the old README says (the old code needed it to start the tunnel).",
)
SSH_REMOTE_PORT = Setting(
    "SSH_REMOTE_PORT",
    kinds.OptionalInteger(1, 65535),
    "",
    "Port on the bastion that "
    "forwards to the gateway's API (the live one in dual mode; paper uses its API port).",
    "14001",
    _S.SSH,
    "gateways[].ssh_remote_port",
    default_doc="the gateway's API port",
    differs="Means the remote port, as the old README says; the old code used it as the local "
    "target port instead.",
)
SSH_VNC_PORT = Setting(
    "SSH_VNC_PORT",
    kinds.OptionalInteger(1, 65535),
    "",
    "Port on the bastion that "
    "forwards to the VNC server; empty = no VNC forward. Needs VNC_SERVER_PASSWORD.",
    "15900",
    _S.SSH,
    "ssh.vnc_port",
    differs="Means the remote port, as the old README says; the old code reversed it.",
)
SSH_RESTART = Setting(
    "SSH_RESTART",
    kinds.Integer(1, 3600, unit="seconds"),
    "5",
    "Seconds to wait before restarting a failed tunnel.",
    "10",
    _S.SSH,
    "ssh.restart_s",
)
SSH_KEY_DIR = Setting(
    "SSH_KEY_DIR",
    kinds.AbsolutePath(optional=True),
    "",
    "Directory with the ssh keys (`id_*`) and `known_hosts`.",
    "/etc/ibgwd/ssh",
    _S.SSH,
    "ssh.key_dir",
    origin=_I,
    default_doc="`/var/lib/ibgwd/<instance>/ssh`",
)
# --- Health, metrics, recovery -----------------------------------------------------------
METRICS_ADDRESS = Setting(
    "METRICS_ADDRESS",
    kinds.HostPort(),
    "",
    "Where Prometheus metrics are served (`/metrics`).",
    "0.0.0.0:9108",
    _S.HEALTH,
    "metrics_address",
    origin=_I,
    default_doc="`127.0.0.1:9108` for the instance `default`, empty (off) for others",
    empty_is_default=False,
)
PROBE_INTERVAL = Setting(
    "PROBE_INTERVAL",
    kinds.Seconds(0.1),
    "10",
    "Seconds between API health probes.",
    "5",
    _S.HEALTH,
    "probe_interval_s",
    origin=_I,
)
PROBE_TIMEOUT = Setting(
    "PROBE_TIMEOUT",
    kinds.Seconds(0.1, 600),
    "3",
    "Seconds one probe may take; at most PROBE_INTERVAL.",
    "2",
    _S.HEALTH,
    "probe_timeout_s",
    origin=_I,
)
PROBE_FAILURES = Setting(
    "PROBE_FAILURES",
    kinds.Integer(1, 100),
    "3",
    "Consecutive failed probes before the API counts as down and recovery starts.",
    "5",
    _S.HEALTH,
    "probe_failure_threshold",
    origin=_I,
)
PROBE_CLIENT_ID = Setting(
    "PROBE_CLIENT_ID",
    kinds.Integer(1, 2147483647),
    "999",
    "API client id the readiness "
    "check uses; never 0 and never TWS_MASTER_CLIENT_ID. Keep it free for ibgwd.",
    "31999",
    _S.HEALTH,
    "probe_client_id",
    origin=_I,
)
LOGIN_TIMEOUT = Setting(
    "LOGIN_TIMEOUT",
    kinds.Seconds(10, 86400),
    "600",
    "Seconds allowed for login and 2FA before recovery starts.",
    "900",
    _S.HEALTH,
    "login_timeout_s",
    origin=_I,
)
RECOVERY_MAX_PER_HOUR = Setting(
    "RECOVERY_MAX_PER_HOUR",
    kinds.Integer(0, 60),
    "4",
    "Most recoveries (restarts) per hour; 0 = never recover automatically.",
    "2",
    _S.HEALTH,
    "recovery_max_per_hour",
    origin=_I,
)
RECOVERY_BACKOFF = Setting(
    "RECOVERY_BACKOFF",
    kinds.Seconds(0, 86400),
    "30",
    "Seconds to wait before the first recovery; doubled for each further one within the hour.",
    "60",
    _S.HEALTH,
    "recovery_backoff_s",
    origin=_I,
)
SHUTDOWN_ACTION = Setting(
    "SHUTDOWN_ACTION",
    kinds.Choice(("pause", "stop"), allow_empty=True),
    "",
    "What a system shutdown or reboot does to a logged-in Gateway. `pause`: IBC `PAUSE`, the "
    "Gateway shuts down at the next minute keeping its restart token, so the next boot within "
    "the week logs in without 2FA (the shutdown waits up to 2 minutes for it; a Gateway not "
    "logged in gets `STOP`). `stop`: IBC `STOP` at once, the next start is a full login. "
    "`systemctl stop` always stops; `systemctl restart`, an upgrade or a crash of ibgwd leave "
    "the Gateway running. In a container, `pause` needs a stop grace period of 3 minutes "
    "(`stop_grace_period`, `terminationGracePeriodSeconds`).",
    "pause",
    _S.RESTARTS,
    "shutdown_action",
    origin=_I,
    default_doc="`pause`; `stop` in a container (a container runtime's default stop grace "
    "period, 10 s, is too short for a PAUSE)",
)
# --- Hooks -------------------------------------------------------------------------------
START_SCRIPTS = Setting(
    "START_SCRIPTS",
    kinds.ScriptsDir(),
    "",
    "Directory of `*.sh` run before the display starts.",
    "hooks/start",
    _S.HOOKS,
    "start_scripts",
    differs="Relative paths are relative to /var/lib/ibgwd/<instance>, not $HOME.",
)
X_SCRIPTS = Setting(
    "X_SCRIPTS",
    kinds.ScriptsDir(),
    "",
    "Directory of `*.sh` run once the display is ready.",
    "hooks/x",
    _S.HOOKS,
    "x_scripts",
)
IBC_SCRIPTS = Setting(
    "IBC_SCRIPTS",
    kinds.ScriptsDir(),
    "",
    "Directory of `*.sh` run once IBC is started.",
    "hooks/ibc",
    _S.HOOKS,
    "ibc_scripts",
)

# --- Notifications -----------------------------------------------------------------------
NOTIFY_URL = Setting(
    "NOTIFY_URL",
    kinds.HttpUrl(),
    "",
    "Webhook that gets a JSON POST when ibgwd needs a human: a 2FA prompt (with its "
    "deadline), an expired prompt, a failed login, the recovery limit, a gateway down for "
    "NOTIFY_AFTER, ready again, a scheduled restart. The body has `title`, `message`, "
    "`priority` and `tags` (ntfy, Gotify) plus `event`, `instance`, `mode`, `state` and "
    "timestamps. Retried with backoff. Secret, as its query may hold a token: use "
    "NOTIFY_URL_FILE or the credential `notify_url` to keep it out of the conffile.",
    "https://ntfy.sh/",
    _S.NOTIFY,
    "notify_url",
    secret=True,
    origin=_I,
)
NOTIFY_TOPIC = Setting(
    "NOTIFY_TOPIC",
    kinds.Text(),
    "",
    "Sent as `topic` in the JSON body: for ntfy, set NOTIFY_URL to the server's root URL "
    "and the topic here.",
    "my-ibgwd-alerts-7f3a",
    _S.NOTIFY,
    "notify_topic",
    origin=_I,
)
NOTIFY_COMMAND = Setting(
    "NOTIFY_COMMAND",
    kinds.Text(),
    "",
    "Shell command run (as a oneshot unit of the instance, user ibgateway) for each "
    "notification, with IBGWD_EVENT, IBGWD_INSTANCE, IBGWD_MODE, IBGWD_STATE, IBGWD_TITLE, "
    "IBGWD_MESSAGE, IBGWD_PRIORITY, IBGWD_TIMESTAMP, IBGWD_DEADLINE and IBGWD_SINCE in its "
    "environment. Its output goes to the journal.",
    "/usr/local/bin/page-me",
    _S.NOTIFY,
    "notify_command",
    origin=_I,
)
NOTIFY_AFTER = Setting(
    "NOTIFY_AFTER",
    kinds.Seconds(0, 86400),
    "300",
    "Seconds a gateway may be not ready before a `down` notification; 0 = never.",
    "120",
    _S.NOTIFY,
    "notify_after_s",
    origin=_I,
)

# Every Setting above, in definition order (which is also the order of the docs).
SETTINGS: tuple[Setting[Any], ...] = tuple(
    v for v in list(globals().values()) if isinstance(v, Setting)
)
BY_NAME: dict[str, Setting[Any]] = {s.name: s for s in SETTINGS}
SECRET_NAMES = frozenset(s.name for s in SETTINGS if s.secret)

# Old-image variables that ibgwd does not use (TWS image only, or container-only).
IGNORED_OLD_NAMES = frozenset({"TZ", "PUID", "PGID", "PASSWD", "PASSWD_FILE", "SSH_RDP_PORT"})
