"""Local isolation, the pure parts and the file-system guards: port guard rules, per-instance
users, cross-instance collisions, who holds a port, link-safe root writes, the X cookie."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from dasbus.typing import get_native
from settings_samples import BASE_ENV, load

from ibgwd.errors import ConfigError, IbgwdError
from ibgwd.isolation import firewall, fs, ports, users, xauth
from ibgwd.names import USER_NAME_MAX, InstanceNames
from ibgwd.units.properties import unit_properties

DEFAULT = InstanceNames("default")
PAPER = InstanceNames("paper")

# ---- names and users --------------------------------------------------------------------------


def test_each_instance_has_its_own_user_and_the_default_keeps_ibgateway() -> None:
    assert DEFAULT.gateway_user == "ibgateway"
    assert PAPER.gateway_user == "ibgw-paper"
    long_a = InstanceNames("a" * 32).gateway_user
    long_b = InstanceNames("a" * 31 + "b").gateway_user
    mixed = InstanceNames("Paper").gateway_user
    assert len(long_a) <= USER_NAME_MAX and len(long_b) <= USER_NAME_MAX
    assert len({long_a, long_b, mixed, PAPER.gateway_user}) == 4
    assert all(re.fullmatch(r"[a-z][a-z0-9_-]*", u) for u in (long_a, long_b, mixed))


def test_a_missing_instance_user_is_created_with_systemd_sysusers() -> None:
    created: list[list[str]] = []
    table: dict[str, pwd.struct_passwd] = {}

    def lookup(name: str) -> pwd.struct_passwd:
        return table[name]

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        created.append(argv)
        table["ibgw-paper"] = pwd.struct_passwd(("ibgw-paper", "x", 990, 990, "", "/", "/"))
        return subprocess.CompletedProcess(argv, 0, "", "")

    assert users.ensure_user(PAPER, lookup=lookup, run=run) == (990, 990)
    assert created[0][-3:] == [
        "/usr/bin/systemd-sysusers",
        "--inline",
        'u ibgw-paper - "IB Gateway (ibgwd instance paper)" /var/lib/ibgwd/paper/home',
    ]
    assert users.ensure_user(PAPER, lookup=lookup, run=run) == (990, 990)
    assert len(created) == 1  # exists now: not created again


def test_the_default_user_is_never_created_by_ibgwd() -> None:
    def lookup(name: str) -> pwd.struct_passwd:
        raise KeyError(name)

    with pytest.raises(IbgwdError, match="'ibgateway' does not exist"):
        users.ensure_user(DEFAULT, lookup=lookup, run=lambda a: pytest.fail("ran"))


# ---- the port guard ---------------------------------------------------------------------------


def test_guard_lets_only_root_and_the_instance_user_reach_api_and_command_ports(
    tmp_path: Path,
) -> None:
    s = load({**BASE_ENV, "TRADING_MODE": "both", "TWS_USERID_PAPER": "p",
              "TWS_PASSWORD_PAPER": "q"}, tmp_path, instance="paper")  # fmt: skip
    rules = firewall.ruleset(s, PAPER)
    assert rules.startswith("table inet ibgwd_paper {}\ndelete table inet ibgwd_paper\n")
    assert (
        'oifname "lo" tcp dport { 4001, 4002, 7462, 7463 } meta skuid != { root, ibgw-paper } '
        "counter reject with tcp reset" in rules
    )
    assert 'iifname != "lo" tcp dport { 4001, 4002, 7462, 7463 }' in rules
    assert "saddr" not in rules  # no RELAY_ALLOW: the relays are open to whoever reaches them


def test_relay_allow_becomes_source_address_rules_per_family(tmp_path: Path) -> None:
    s = load({**BASE_ENV, "RELAY_ALLOW": "10.0.0.0/8,192.0.2.7"}, tmp_path)
    rules = firewall.ruleset(s, DEFAULT)
    assert (
        "meta nfproto ipv4 tcp dport { 4004 } ip saddr != { 10.0.0.0/8, 192.0.2.7/32 } "
        "counter reject with tcp reset" in rules
    )
    assert "meta nfproto ipv6 tcp dport { 4004 } counter reject with tcp reset" in rules


def test_guard_unit_is_root_with_net_admin_only_and_deletes_its_table_on_stop(
    tmp_path: Path,
) -> None:
    s = load(BASE_ENV, tmp_path)
    spec = firewall.guard_spec(s, DEFAULT)
    props = {k: get_native(v) for k, v in unit_properties(spec, parent="p", slice_name="s")}
    assert props["User"] == "root"
    rules = firewall.ruleset(s, DEFAULT)
    assert props["ExecStartPre"] == [("/usr/sbin/nft", ["/usr/sbin/nft", rules], False)]
    # The main process re-applies the same rules; the stop deletes the table (never failing).
    assert props["ExecStart"][0][1][-1] == rules and props["Restart"] == "always"
    stop_post = props["ExecStopPost"][0][1]
    assert stop_post[:3] == ["/bin/sh", "-c", 'trap "" TERM; exec /usr/sbin/nft "$1"']
    assert stop_post[-1] == "table inet ibgwd_default {}\ndelete table inet ibgwd_default"
    assert props["CapabilityBoundingSet"] == 1 << 12  # CAP_NET_ADMIN, the last value wins
    assert props["RestrictAddressFamilies"] == (True, ["AF_UNIX", "AF_NETLINK"])
    assert "PrivateNetwork" not in props  # it must change the host's network namespace


def test_guard_is_replaced_only_when_its_rules_change(tmp_path: Path) -> None:
    a = firewall.guard_spec(load(BASE_ENV, tmp_path), DEFAULT)
    assert a == firewall.guard_spec(load(BASE_ENV, tmp_path), DEFAULT)
    b = firewall.guard_spec(load({**BASE_ENV, "RELAY_ALLOW": "10.0.0.0/8"}, tmp_path), DEFAULT)
    assert a != b


def test_relay_unit_has_no_ip_address_allow_that_would_cut_its_own_leg(tmp_path: Path) -> None:
    from ibgwd.units.spec import relay_spec

    s = load({**BASE_ENV, "RELAY_ALLOW": "10.0.0.0/8"}, tmp_path)
    props = dict(unit_properties(relay_spec(s, s.gateways[0], DEFAULT), parent="p", slice_name="s"))
    assert "IPAddressAllow" not in props and "IPAddressDeny" not in props


def test_guard_failure_refuses_to_start_on_a_host_or_with_relay_allow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = load(BASE_ENV, tmp_path)
    allow = load({**BASE_ENV, "RELAY_ALLOW": "10.0.0.0/8"}, tmp_path)
    firewall.check_applied("done", allow, DEFAULT)  # applied: nothing to say
    monkeypatch.setattr(firewall, "in_container", lambda: False)
    with pytest.raises(firewall.FirewallError, match="every local user could reach"):
        firewall.check_applied("failed", plain, DEFAULT)
    monkeypatch.setattr(firewall, "in_container", lambda: True)
    firewall.check_applied("failed", plain, DEFAULT)  # a container: a warning only
    with pytest.raises(firewall.FirewallError, match="RELAY_ALLOW is set and cannot be enforced"):
        firewall.check_applied("failed", allow, DEFAULT)


# ---- collisions between instances ---------------------------------------------------------------


def test_two_conffiles_with_the_same_ports_are_refused_naming_both(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "ibgwd.conf").write_text("TWS_USERID=a\nTWS_PASSWORD=b\n", encoding="utf-8")
    # The other instance's password comes as a credential: its conffile still counts.
    (etc / "paper.conf").write_text("API_PORT_PAPER=4012\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load({"IB_GATEWAY_VERSION": "10.37.1o"}, tmp_path)
    text = str(caught.value.problems[0])
    assert text.startswith("COMMAND_PORT_PAPER: invalid value '7463'")
    assert f"{etc}/paper.conf" in text and f"{etc}/ibgwd.conf" in text
    settings = {p.setting for p in caught.value.problems}
    assert "API_PORT_PAPER" not in settings  # 4002 vs 4012: no clash
    assert "RELAY_PORT_PAPER" in settings


def test_distinct_ports_and_displays_pass_and_other_files_are_ignored(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "paper.conf").write_text(
        "API_PORT_PAPER=4012\nRELAY_PORT_PAPER=4014\nCOMMAND_PORT_PAPER=7473\n", encoding="utf-8"
    )
    (etc / "notes.txt").write_text("API_PORT_PAPER=4002\n", encoding="utf-8")
    (etc / "ibgwd.conf.dpkg-old").write_text("API_PORT_PAPER=4002\n", encoding="utf-8")
    assert load(BASE_ENV, tmp_path).gateways[0].api_port == 4002


def test_ports_of_a_listening_socket_and_its_owner(tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
    (net / "tcp").write_text(
        header
        + "   0: 0100007F:0FA2 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        + "   990        0 4242 1 0000000000000000 100 0 0 10 0\n"
        + "   1: 0100007F:0FA2 0100007F:C350 01 00000000:00000000 00:00000000 00000000"
        + "  1000        0 4343 1 0000000000000000 100 0 0 10 0\n",
        encoding="utf-8",
    )
    assert ports.listeners(4002, tmp_path) == [ports.Listener(4242, 990)]
    assert ports.foreign_holder(4002, 990, "u.service", tmp_path) == ""
    assert "uid 990" in ports.foreign_holder(4002, 1000, "u.service", tmp_path)
    assert ports.foreign_holder(4001, 990, "u.service", tmp_path) == ""  # nothing listens


def test_unit_of_a_process_is_read_from_its_cgroup(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cgroup").write_text(
        "0::/ibgwd.slice/ibgwd-default.slice/ibgwd-default-ibc-paper.service\n", encoding="utf-8"
    )
    assert ports.unit_of(7, tmp_path) == "ibgwd-default-ibc-paper.service"
    assert ports.unit_of(8, tmp_path) == ""


# ---- link-safe root writes ----------------------------------------------------------------------


@pytest.fixture
def untrusted(tmp_path: Path) -> Path:
    """A directory another user could write (mode 0777), as the gateway's settings are."""
    d = tmp_path / "gw"
    d.mkdir()
    d.chmod(0o777)
    return d


def test_a_link_in_a_directory_others_can_write_is_refused(untrusted: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    (untrusted / "settings").symlink_to(victim)
    with pytest.raises(fs.UnsafePathError, match="refusing to follow the symbolic link"):
        fs.ensure_dir(untrusted / "settings", 12345, 12345)
    with pytest.raises(fs.UnsafePathError):
        fs.ensure_dir(untrusted / "settings" / "deeper", 12345, 12345)
    assert victim.stat().st_uid == os.getuid() and list(victim.iterdir()) == []


def test_a_link_in_a_root_only_directory_is_followed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root-owned directories")
    trusted = tmp_path / "root-only"
    trusted.mkdir(mode=0o755)
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    (trusted / "link").symlink_to(real)
    fs.ensure_dir(trusted / "link" / "made", 0, 0, 0o700)
    assert (real / "made").is_dir()


def test_ensure_dir_creates_and_hands_over_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    fs.ensure_dir(target, os.getuid(), os.getgid(), 0o710)
    assert (target.stat().st_mode & 0o777) == 0o710
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o755


def test_file_writer_does_not_follow_a_planted_directory_link(
    untrusted: Path, tmp_path: Path
) -> None:
    from ibgwd.render.render import RenderedFile
    from ibgwd.render.write import write_files

    victim = tmp_path / "victim"
    victim.mkdir()
    (untrusted / "ibc").symlink_to(victim)
    with pytest.raises(OSError, match="refusing"):
        write_files([RenderedFile(untrusted / "ibc" / "config.ini", "x", 0o600, True, False)])
    assert list(victim.iterdir()) == []


def test_repair_gives_back_files_and_dirs_but_not_links_or_hard_links(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    top = tmp_path / "settings"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "jts.ini").write_text("x", encoding="utf-8")
    outside = tmp_path / "outside"
    outside.write_text("root's", encoding="utf-8")
    (top / "link").symlink_to(outside)
    os.link(outside, top / "hard")
    changed = fs.repair_ownership(top, 4242, 4242)
    assert changed == 2  # sub and sub/jts.ini
    assert (top / "sub" / "jts.ini").stat().st_uid == 4242
    assert outside.stat().st_uid == 0  # neither through the link nor the hard link
    assert os.lstat(top / "link").st_uid == 0


def test_vmoptions_rewrite_keeps_mode_and_refuses_a_link(tmp_path: Path, untrusted: Path) -> None:
    pattern = re.compile(r"^-Xmx\d+[kKmMgG]?$", re.MULTILINE)
    vm = tmp_path / "ibgateway.vmoptions"
    vm.write_text("-Xmx768m\n-Dx=y\n", encoding="utf-8")
    vm.chmod(0o664)
    assert fs.rewrite(vm, pattern, "-Xmx2048m")
    assert vm.read_text(encoding="utf-8") == "-Xmx2048m\n-Dx=y\n"
    assert vm.stat().st_mode & 0o777 == 0o644  # group write masked
    assert not fs.rewrite(vm, pattern, "-Xmx2048m")  # already right
    secret = tmp_path / "secret"
    secret.write_text("-Xmx1m\n", encoding="utf-8")
    (untrusted / "ibgateway.vmoptions").symlink_to(secret)
    assert not fs.rewrite(untrusted / "ibgateway.vmoptions", pattern, "-Xmx2048m")
    assert secret.read_text(encoding="utf-8") == "-Xmx1m\n"


# ---- the X cookie --------------------------------------------------------------------------------


def test_xauthority_entry_is_read_back_by_xauth(tmp_path: Path) -> None:
    if shutil.which("xauth") is None:
        pytest.skip("xauth (package xauth) not installed")
    cookie = bytes(range(0x70, 0x80))  # includes bytes that are not valid UTF-8 on their own
    path = tmp_path / "Xauthority"
    # Through the writer's text path: surrogateescape round trip, byte for byte.
    path.write_bytes(xauth.as_text(xauth.xauthority(7, cookie)).encode("utf-8", "surrogateescape"))
    listed = subprocess.run(
        ["xauth", "-f", str(path), "list"], capture_output=True, text=True, check=True
    ).stdout
    assert listed.split()[-2:] == ["MIT-MAGIC-COOKIE-1", cookie.hex()]
    assert listed.split()[0].endswith(":7")
    assert len(xauth.new_cookie()) == 16 and xauth.new_cookie() != xauth.new_cookie()
