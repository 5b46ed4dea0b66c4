"""The pure ssh tunnel specs (SSH_* settings → ssh command line and unit), and the wrapper's key
discovery and askpass helper run for real against OpenSSH's own tools."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from settings_samples import BASE_ENV, DUAL_ENV, load

from ibgwd.config.model import Mode, Settings
from ibgwd.names import InstanceNames
from ibgwd.supervisor.files import RuntimeFiles
from ibgwd.supervisor.supervisor import static_specs
from ibgwd.units import tunnel
from ibgwd.units.properties import unit_properties
from ibgwd.units.spec import Paths, UnitSpec

NAMES = InstanceNames("default")
PATHS = Paths(runtime_dir=Path("/run/ibgwd/default"), state_dir=Path("/var/lib/ibgwd/default"))
TUNNEL = {
    "TRADING_MODE": "live",
    "SSH_TUNNEL": "yes",
    "SSH_USER_TUNNEL": "tunnel@bastion.example.org",
}
PASSPHRASE = "pass-Phrase-91c"  # test credential


def settings(tmp_path: Path, **env: str) -> Settings:
    return load(BASE_ENV | TUNNEL | env, tmp_path)


def ssh_argv(spec: UnitSpec) -> list[str]:
    """ssh's arguments: what follows the wrapper's script, $0, key dir and askpass."""
    argv = list(spec.exec_start)
    return argv[argv.index(tunnel.WRAPPER) + 4 :]


def test_no_tunnel_unless_ssh_tunnel_is_set(tmp_path: Path) -> None:
    plain = load(BASE_ENV, tmp_path)
    assert tunnel.tunnel_specs(plain, NAMES, PATHS) == []
    assert not any(c.startswith("tunnel") for c in static_specs(plain, NAMES, PATHS, {}))


def test_tunnel_forwards_bastion_remote_port_to_the_api_port(tmp_path: Path) -> None:
    s = settings(tmp_path, SSH_REMOTE_PORT="14001", SSH_ALIVE_INTERVAL="7", SSH_ALIVE_COUNT="4")
    [spec] = tunnel.tunnel_specs(s, NAMES, PATHS)
    api = s.gateway(Mode.LIVE).api_port
    assert spec.component == "tunnel-live"
    assert spec.name == "ibgwd-default-tunnel-live.service"
    assert ssh_argv(spec) == [
        "-N",
        "-T",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ServerAliveInterval=7",
        "-o",
        "ServerAliveCountMax=4",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        "UserKnownHostsFile=/var/lib/ibgwd/default/ssh/known_hosts",
        "-R",
        f"127.0.0.1:14001:127.0.0.1:{api}",
        "tunnel@bastion.example.org",
    ]


def test_remote_port_defaults_to_the_api_port(tmp_path: Path) -> None:
    s = settings(tmp_path)
    [spec] = tunnel.tunnel_specs(s, NAMES, PATHS)
    api = s.gateway(Mode.LIVE).api_port
    assert f"127.0.0.1:{api}:127.0.0.1:{api}" in spec.exec_start


def test_ssh_restart_is_the_restart_delay_and_the_tunnel_always_restarts(tmp_path: Path) -> None:
    [spec] = tunnel.tunnel_specs(settings(tmp_path, SSH_RESTART="9"), NAMES, PATHS)
    assert (spec.restart, spec.restart_s) == ("always", 9.0)
    props = dict(unit_properties(spec, parent="ibgwd.service", slice_name="x.slice"))
    assert props["Restart"].unpack() == "always"
    assert props["RestartUSec"].unpack() == 9_000_000


def test_ssh_options_are_split_and_come_before_the_destination(tmp_path: Path) -> None:
    s = settings(tmp_path, SSH_OPTIONS="-p 2222 -o 'ProxyCommand=nc -X 5 %h %p'")
    [spec] = tunnel.tunnel_specs(s, NAMES, PATHS)
    assert ssh_argv(spec)[-5:] == [
        "-p",
        "2222",
        "-o",
        "ProxyCommand=nc -X 5 %h %p",
        "tunnel@bastion.example.org",
    ]


def test_keys_come_from_ssh_key_dir(tmp_path: Path) -> None:
    [spec] = tunnel.tunnel_specs(settings(tmp_path, SSH_KEY_DIR="/etc/ibgwd/ssh"), NAMES, PATHS)
    argv = list(spec.exec_start)
    assert argv[argv.index(tunnel.WRAPPER) + 2] == "/etc/ibgwd/ssh"
    assert "UserKnownHostsFile=/etc/ibgwd/ssh/known_hosts" in argv
    assert spec.read_write_paths == ("-/etc/ibgwd/ssh",)


def test_dual_mode_runs_one_tunnel_per_gateway_and_vnc_only_on_live(tmp_path: Path) -> None:
    env = (
        DUAL_ENV
        | TUNNEL
        | {"TRADING_MODE": "both", "SSH_REMOTE_PORT": "14001", "SSH_VNC_PORT": "15900"}
    )
    s = load(env | {"VNC_SERVER_PASSWORD": "vnc-pw-x"}, tmp_path)
    live, paper = tunnel.tunnel_specs(s, NAMES, PATHS)
    api_live, api_paper = s.gateway(Mode.LIVE).api_port, s.gateway(Mode.PAPER).api_port
    forwards_live = [a for a in ssh_argv(live) if a.startswith("127.0.0.1:")]
    forwards_paper = [a for a in ssh_argv(paper) if a.startswith("127.0.0.1:")]
    assert forwards_live == [
        f"127.0.0.1:14001:127.0.0.1:{api_live}",
        f"127.0.0.1:15900:127.0.0.1:{s.vnc_port}",
    ]
    assert forwards_paper == [f"127.0.0.1:{api_paper}:127.0.0.1:{api_paper}"]
    assert paper.name == "ibgwd-default-tunnel-paper.service"


def test_tunnel_both_keeps_the_relay_and_yes_drops_it(tmp_path: Path) -> None:
    both = settings(tmp_path, SSH_TUNNEL="both")
    only = settings(tmp_path, SSH_TUNNEL="yes")
    assert both.relay_enabled and both.tunnel_enabled
    assert not only.relay_enabled and only.tunnel_enabled
    assert "tunnel-live" in static_specs(both, NAMES, PATHS, {})
    assert "tunnel-live" in static_specs(only, NAMES, PATHS, {})


def test_passphrase_runs_an_agent_and_appears_in_no_unit_field(tmp_path: Path) -> None:
    s = settings(tmp_path, SSH_PASSPHRASE=PASSPHRASE)
    [spec] = tunnel.tunnel_specs(s, NAMES, PATHS)
    socket = "/run/ibgwd/default/ssh/agent-live.sock"
    assert spec.exec_start[:4] == (tunnel.SSH_AGENT, "-a", socket, "--")
    assert spec.exec_start_pre == (("/bin/rm", "-f", socket),)
    argv = list(spec.exec_start)
    assert argv[argv.index(tunnel.WRAPPER) + 3] == "/run/ibgwd/default/ssh/askpass"
    props = unit_properties(spec, parent="ibgwd.service", slice_name="x.slice")
    assert PASSPHRASE not in repr(spec) + repr(props) + repr(spec.environment)
    assert spec.environment == ()


def test_without_passphrase_no_agent_and_no_askpass(tmp_path: Path) -> None:
    [spec] = tunnel.tunnel_specs(settings(tmp_path), NAMES, PATHS)
    assert spec.exec_start[0] == "/bin/sh"
    assert spec.exec_start_pre == ()
    argv = list(spec.exec_start)
    assert argv[argv.index(tunnel.WRAPPER) + 3] == ""


def test_a_changed_passphrase_changes_the_tunnel_digest_only(tmp_path: Path) -> None:
    s = settings(tmp_path, SSH_PASSPHRASE=PASSPHRASE)
    a = static_specs(s, NAMES, PATHS, {"tunnel-live": "a", "ibc-live": "i"})
    b = static_specs(s, NAMES, PATHS, {"tunnel-live": "b", "ibc-live": "i"})
    assert a["tunnel-live"] != b["tunnel-live"]
    assert a["ibc-live"] == b["ibc-live"]


def run_wrapper(key_dir: Path, *ssh_args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", tunnel.WRAPPER, "ibgwd-tunnel", str(key_dir), "", *ssh_args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def keygen(path: Path, passphrase: str = "") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)],
        check=True,
        timeout=30,
    )


def test_wrapper_passes_every_private_key_of_the_key_dir_to_ssh(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    keygen(keys / "id_ed25519")
    keygen(keys / "id_work")
    (keys / "known_hosts").write_text("")
    # ssh -G prints the configuration it would use and exits without connecting.
    r = run_wrapper(keys, "-G", "-N", "tunnel@bastion.example.org")
    assert r.returncode == 0, r.stderr
    identities = sorted(
        line.split()[1] for line in r.stdout.splitlines() if line.startswith("identityfile ")
    )
    assert str(keys / "id_ed25519") in identities
    assert str(keys / "id_work") in identities
    assert not any(i.endswith(".pub") or i.endswith("known_hosts") for i in identities)


def test_wrapper_says_when_the_key_dir_has_no_key(tmp_path: Path) -> None:
    r = run_wrapper(tmp_path, "-G", "tunnel@bastion.example.org")
    assert "no ssh key (id_*) in" in r.stderr and "SSH_KEY_DIR" in r.stderr


@pytest.mark.parametrize(("given", "loaded"), [(PASSPHRASE, True), ("wrong-one", False)])
def test_askpass_unlocks_the_key_once_and_gives_up_on_a_wrong_passphrase(
    tmp_path: Path, given: str, loaded: bool
) -> None:
    paths = Paths(runtime_dir=tmp_path, state_dir=tmp_path)
    tunnel.ssh_dir(paths).mkdir()
    tunnel.passphrase_file(paths).write_text(given)
    askpass = tunnel.askpass_file(paths)
    askpass.write_text(tunnel.askpass_script(paths))
    askpass.chmod(0o500)
    keygen(tmp_path / "id_ed25519", PASSPHRASE)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    r = subprocess.run(
        [
            tunnel.SSH_AGENT,
            "-a",
            str(tmp_path / "agent.sock"),
            "--",
            "/bin/sh",
            "-c",
            'SSH_ASKPASS="$1" SSH_ASKPASS_REQUIRE=force ssh-add -q "$2" </dev/null;'
            " ssh-add -l; true",
            "t",
            str(askpass),
            str(tmp_path / "id_ed25519"),
        ],
        capture_output=True,
        text=True,
        timeout=30,  # a wrong passphrase must not make ssh-add ask forever
        env=env,
        check=False,
    )
    assert ("ED25519" in r.stdout) is loaded, r.stdout + r.stderr


def test_runtime_files_write_the_passphrase_0600_and_remove_it_when_unset(tmp_path: Path) -> None:
    paths = Paths(runtime_dir=tmp_path / "run", state_dir=tmp_path / "state")
    files = RuntimeFiles(paths, os.getuid(), os.getgid())
    env = {"TWS_SETTINGS_PATH": str(tmp_path / "settings"), "SSH_KEY_DIR": str(tmp_path / "k")}
    first = files.write(settings(tmp_path, SSH_PASSPHRASE=PASSPHRASE, **env))
    secret = tunnel.passphrase_file(paths)
    assert secret.read_text() == PASSPHRASE
    assert secret.stat().st_mode & 0o777 == 0o600
    assert os.access(tunnel.askpass_file(paths), os.X_OK)
    assert (tmp_path / "k").is_dir()  # the key directory is there to be filled
    assert PASSPHRASE not in repr(first)
    second = files.write(settings(tmp_path, SSH_PASSPHRASE="other-" + PASSPHRASE, **env))
    assert first["tunnel-live"] != second["tunnel-live"]
    assert first["ibc-live"] == second["ibc-live"]
    files.write(settings(tmp_path, **env))
    assert not secret.exists()
