"""Pure specs of the ssh reverse tunnels (SSH_TUNNEL): one ssh per gateway to the bastion.

Each tunnel is `ibgwd-<instance>-tunnel-<mode>.service` running
`ssh -N -T ... -R 127.0.0.1:<SSH_REMOTE_PORT>:127.0.0.1:<api port> user@host`, restarted by
systemd SSH_RESTART seconds after it ends. A small /bin/sh wrapper finds the keys (`id_*`)
in SSH_KEY_DIR when the unit starts and passes them as `-i`. With SSH_PASSPHRASE the unit
runs ssh-agent (`ssh-agent -a <socket> -- wrapper`); the wrapper loads each key with ssh-add,
whose askpass helper reads the passphrase from a 0600 file: the passphrase is never on argv,
in an environment or in a unit property.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ibgwd.config.model import GatewaySettings, Settings
from ibgwd.names import InstanceNames
from ibgwd.units.spec import Paths, UnitSpec

SSH = "/usr/bin/ssh"
SSH_AGENT = "/usr/bin/ssh-agent"
SSH_ADD = "/usr/bin/ssh-add"

# $1 = key directory, $2 = askpass helper ("" = no passphrase), the rest = ssh's arguments.
# Keys are found at each start, so adding a key needs a tunnel restart, not a reload.
WRAPPER = f"""\
dir=$1 askpass=$2
shift 2
found=
for key in "$dir"/id_*; do
  case $key in *.pub|*-cert) continue ;; esac
  [ -f "$key" ] || continue
  found=yes
  if [ -n "$askpass" ]; then
    SSH_ASKPASS=$askpass SSH_ASKPASS_REQUIRE=force {SSH_ADD} -q "$key" </dev/null \\
      || echo "ibgwd: ssh-add could not load $key (wrong SSH_PASSPHRASE?)" >&2
  fi
  set -- -i "$key" "$@"
done
[ -n "$found" ] || echo "ibgwd: no ssh key (id_*) in $dir (SSH_KEY_DIR)" >&2
exec {SSH} "$@"
"""


def ssh_dir(paths: Paths) -> Path:
    """Runtime directory of the tunnels: askpass helper, passphrase file, agent sockets."""
    return paths.runtime_dir / "ssh"


def passphrase_file(paths: Paths) -> Path:
    return ssh_dir(paths) / "passphrase"


def askpass_file(paths: Paths) -> Path:
    return ssh_dir(paths) / "askpass"


def agent_socket(paths: Paths, gateway: GatewaySettings) -> Path:
    return ssh_dir(paths) / f"agent-{gateway.mode.value}.sock"


def askpass_script(paths: Paths) -> str:
    """ssh-add's SSH_ASKPASS helper: prints the passphrase from its 0600 file. On ssh-add's
    second prompt ("Bad passphrase, try again") it answers nothing, so ssh-add gives up
    instead of asking forever."""
    return (
        "#!/bin/sh\n"
        "# Written by ibgwd: answers ssh-add's passphrase prompt from SSH_PASSPHRASE's file.\n"
        'case "$1" in Bad*) exit 1 ;; esac\n'
        f"exec cat {shlex.quote(str(passphrase_file(paths)))}\n"
    )


def forwards(settings: Settings, gateway: GatewaySettings) -> tuple[str, ...]:
    """`-R` arguments: the bastion's loopback port → this gateway's API (and VNC on the first
    gateway when SSH_VNC_PORT is set, as the old image forwarded VNC for live only)."""
    out: tuple[str, ...] = (
        "-R",
        f"127.0.0.1:{gateway.ssh_remote_port}:127.0.0.1:{gateway.api_port}",
    )
    first = settings.gateways[0] is gateway
    if first and settings.ssh.vnc_port and settings.vnc_enabled:
        out += ("-R", f"127.0.0.1:{settings.ssh.vnc_port}:127.0.0.1:{settings.vnc_port}")
    return out


def ssh_arguments(settings: Settings, gateway: GatewaySettings) -> tuple[str, ...]:
    """ssh's arguments after the keys (`-i`, added when the unit starts)."""
    ssh = settings.ssh
    key_dir = Path(ssh.key_dir)
    return (
        "-N",
        "-T",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        f"ServerAliveInterval={ssh.alive_interval}",
        "-o",
        f"ServerAliveCountMax={ssh.alive_count}",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"UserKnownHostsFile={key_dir / 'known_hosts'}",
        *forwards(settings, gateway),
        *shlex.split(ssh.options),
        ssh.user_tunnel,
    )


def tunnel_spec(
    settings: Settings, gateway: GatewaySettings, names: InstanceNames, paths: Paths
) -> UnitSpec:
    mode = gateway.mode.value
    ssh = settings.ssh
    encrypted = ssh.passphrase is not None and bool(ssh.passphrase)
    askpass = str(askpass_file(paths)) if encrypted else ""
    wrapper = ("/bin/sh", "-c", WRAPPER, "ibgwd-tunnel", ssh.key_dir, askpass)
    command = wrapper + ssh_arguments(settings, gateway)
    pre: tuple[tuple[str, ...], ...] = ()
    if encrypted:
        socket = str(agent_socket(paths, gateway))
        # The agent is the child; the parent execs the wrapper, which execs ssh (the main PID).
        # A leftover socket of a killed agent would make the new one fail to bind.
        command = (SSH_AGENT, "-a", socket, "--", *command)
        pre = (("/bin/rm", "-f", socket),)
    return UnitSpec(
        component=f"tunnel-{mode}",
        name=names.unit("tunnel", mode),
        user=names.gateway_user,
        description=(
            f"ibgwd {names.instance}: ssh tunnel {ssh.user_tunnel}:{gateway.ssh_remote_port}"
            f" -> API {gateway.api_port}"
        ),
        exec_start=command,
        exec_start_pre=pre,
        restart="always",
        restart_s=float(ssh.restart_s),
        # "-": a missing key directory must not stop the unit from starting (ssh then says
        # what is missing); writable so accept-new can record the bastion's host key.
        read_write_paths=(f"-{ssh.key_dir}",),
        # ssh ends with 255 on SIGTERM (a clean stop) as on a lost connection (restarted anyway).
        success_exit_status=(255,),
        timeout_stop_s=5.0,
    )


def tunnel_specs(settings: Settings, names: InstanceNames, paths: Paths) -> list[UnitSpec]:
    """One tunnel per gateway when SSH_TUNNEL is yes or both; none otherwise."""
    if not settings.tunnel_enabled:
        return []
    return [tunnel_spec(settings, g, names, paths) for g in settings.gateways]
