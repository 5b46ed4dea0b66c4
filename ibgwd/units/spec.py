"""Pure unit specs: what each child component runs and how systemd supervises it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ibgwd.config.model import GatewaySettings, Mode, Settings
from ibgwd.names import GATEWAY_USER, InstanceNames


@dataclass(frozen=True)
class Paths:
    """Where the daemon writes for one instance."""

    runtime_dir: Path  # tmpfs, per instance
    state_dir: Path

    def ibc_ini(self, mode: Mode) -> Path:
        return self.runtime_dir / "ibc" / f"config-{mode.value}.ini"

    def custom_ibc_ini(self, mode: Mode) -> Path:
        """CUSTOM_CONFIG=yes: the admin's own config.ini, kept with the instance's state."""
        return self.state_dir / "ibc" / f"config-{mode.value}.ini"

    @property
    def vnc_password_file(self) -> Path:
        return self.runtime_dir / "vnc" / "passwd"

    @property
    def home(self) -> Path:
        return self.state_dir / "home"


@dataclass(frozen=True)
class UnitSpec:
    """One transient service. Never holds a secret: secrets travel in 0600 files only."""

    component: str  # display, vnc, ibc-live, relay-paper, tunnel-live
    name: str
    description: str
    exec_start: tuple[str, ...]
    exec_start_pre: tuple[tuple[str, ...], ...] = ()
    exec_start_post: tuple[tuple[str, ...], ...] = ()
    user: str = GATEWAY_USER
    environment: tuple[str, ...] = ()
    working_directory: str = ""
    restart: str = "no"  # systemd Restart=
    restart_s: float = 1.0
    after: tuple[str, ...] = ()
    part_of: tuple[str, ...] = ()
    success_exit_status: tuple[int, ...] = ()
    timeout_stop_s: float = 5.0
    read_write_paths: tuple[str, ...] = ()
    ip_address_allow: tuple[str, ...] = ()
    service_type: str = "simple"  # "oneshot" for hooks: the start job ends when they exit
    timeout_start_s: float = 0.0  # 0 = systemd's default
    # Digest of the files this unit reads (rendered config, password file): a reload restarts the
    # unit when it changes even though the command line did not. In memory only, never exported.
    content_digest: str = field(default="", compare=True, repr=False)


def x_socket(display: int) -> str:
    return f"/tmp/.X11-unix/X{display}"


def wait_for_x(display: int) -> tuple[str, ...]:
    """An ExecStartPre that waits until the X server accepts connections (a stale socket after a
    crash exists but refuses)."""
    script = (
        "for i in $(seq 150); do "
        f"socat -u OPEN:/dev/null UNIX-CONNECT:{x_socket(display)} 2>/dev/null && exit 0; "
        "sleep 0.1; done; echo 'X display not ready' >&2; exit 1"
    )
    return ("/bin/sh", "-c", script)


def display_spec(settings: Settings, names: InstanceNames) -> UnitSpec:
    n = settings.display
    return UnitSpec(
        component="display",
        name=names.unit("display"),
        description=f"ibgwd {names.instance}: X display :{n} (Xvfb)",
        exec_start=(
            "/usr/bin/Xvfb",
            f":{n}",
            "-screen",
            "0",
            "1024x768x24",
            "-nolisten",
            "tcp",
        ),
        exec_start_post=(wait_for_x(n),),
        restart="always",
        restart_s=0.5,
    )


def ibc_spec(
    settings: Settings, gateway: GatewaySettings, names: InstanceNames, paths: Paths
) -> UnitSpec:
    mode = gateway.mode.value
    ibcstart = str(Path(settings.ibc_path) / "scripts" / "ibcstart.sh")
    custom = settings.custom_config
    ini = paths.custom_ibc_ini(gateway.mode) if custom else paths.ibc_ini(gateway.mode)
    argv = (
        ibcstart,
        settings.gateway_version,
        "-g",
        f"--tws-path={settings.tws_path}",
        f"--tws-settings-path={gateway.settings_path}",
        f"--ibc-path={settings.ibc_path}",
        f"--ibc-ini={ini}",
        f"--on2fatimeout={settings.twofa_timeout_action}",
        f"--mode={mode}",
    )
    display_unit = names.unit("display")
    return UnitSpec(
        component=f"ibc-{mode}",
        name=names.unit("ibc", mode),
        description=f"ibgwd {names.instance}: IBC + IB Gateway ({mode})",
        exec_start=argv,
        exec_start_pre=(wait_for_x(settings.display),),
        environment=(
            f"DISPLAY=:{settings.display}",
            f"HOME={paths.home}",
            f"TZ={settings.time_zone}",
        ),
        working_directory=gateway.settings_path,
        after=(display_unit,),
        part_of=(display_unit,),
        # 0 = STOP / logoff; 143 = SIGTERM forwarded to the JVM: both are a clean end.
        success_exit_status=(143,),
        timeout_stop_s=30.0,
        read_write_paths=(gateway.settings_path, str(paths.home)),
        # The start job ends once ibcstart.sh was exec'd (Type=simple ends at fork, before
        # systemd set the process up): IBC_SCRIPTS run after IBC was launched, and a launcher
        # that cannot be executed fails the start job instead of the unit later.
        service_type="exec",
    )


def vnc_spec(settings: Settings, names: InstanceNames, paths: Paths) -> UnitSpec:
    display_unit = names.unit("display")
    return UnitSpec(
        component="vnc",
        name=names.unit("vnc"),
        description=f"ibgwd {names.instance}: VNC server for display :{settings.display}",
        exec_start=(
            "/usr/bin/x11vnc",
            "-display",
            f":{settings.display}",
            "-rfbport",
            str(settings.vnc_port),
            "-listen",
            settings.vnc_bind_address,
            "-forever",
            "-shared",
            "-noipv6",
            "-quiet",
            "-passwdfile",
            str(paths.vnc_password_file),
        ),
        exec_start_pre=(wait_for_x(settings.display),),
        restart="always",
        restart_s=1.0,
        after=(display_unit,),
        part_of=(display_unit,),
        timeout_stop_s=3.0,  # x11vnc sometimes hangs in its SIGTERM handler
    )


def relay_spec(settings: Settings, gateway: GatewaySettings, names: InstanceNames) -> UnitSpec:
    mode = gateway.mode.value
    listen = (
        f"TCP-LISTEN:{gateway.relay_port},bind={settings.relay_bind_address},"
        "reuseaddr,fork,nodelay,keepalive"
    )
    if ":" in settings.relay_bind_address:
        listen = listen.replace("TCP-LISTEN", "TCP6-LISTEN", 1)
    return UnitSpec(
        component=f"relay-{mode}",
        name=names.unit("relay", mode),
        description=f"ibgwd {names.instance}: API relay {gateway.relay_port} -> {gateway.api_port}",
        exec_start=(
            "/usr/bin/socat",
            listen,
            f"TCP:127.0.0.1:{gateway.api_port},nodelay",
        ),
        restart="always",
        restart_s=0.5,
        success_exit_status=(143,),
        ip_address_allow=settings.relay_allow,
    )


def command_line(spec: UnitSpec) -> str:
    """The spec's command, shell-quoted, for logs and docs."""
    return shlex.join(spec.exec_start)
