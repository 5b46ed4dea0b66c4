"""The instance's port guard: one nftables table per instance, kernel-enforced.

- Loopback connections to the Gateway's API port and IBC's command server are refused unless
  the connecting socket belongs to root (ibgwd's probes and commands) or to the instance's own
  user (its relay, hooks and the Gateway itself): `meta skuid`, the socket owner's uid.
- Connections from other hosts to those two ports are refused outright: remote clients come
  through the relay.
- RELAY_ALLOW: connections to the relay ports from any other source address are refused at
  connect (a TCP reset). socat's own connection to the Gateway is loopback and owned by the
  instance user, so it is unaffected (unlike systemd's IPAddressAllow=, which filtered it).

The table is loaded by a unit (root, CAP_NET_ADMIN only) whose ExecStartPre carries the whole
rule set, so a reload that changes a port or RELAY_ALLOW replaces the unit and with it the
table (one nft transaction), and stopping the instance deletes it. Why nftables on the socket
owner rather than a network namespace or `socket cgroupv2`: docs/decisions.md.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from pathlib import Path

from gi.repository import GLib

from ibgwd.config.model import Settings
from ibgwd.errors import EX_UNAVAILABLE, IbgwdError
from ibgwd.names import InstanceNames
from ibgwd.units.spec import UnitSpec

log = logging.getLogger(__name__)

COMPONENT = "guard"
NFT = "/usr/sbin/nft"
REAPPLY_S = 30  # the guard re-loads its table this often (one nft run, about 5 ms)
CONTAINER_MARKER = Path("/run/systemd/container")  # written by systemd inside a container


class FirewallError(IbgwdError):
    """The kernel (or the missing nft tool) cannot enforce a guard that must hold."""

    exit_code = EX_UNAVAILABLE


def _ports(values: list[int]) -> str:
    return "{ " + ", ".join(str(p) for p in sorted(set(values))) + " }"


def _relay_rules(settings: Settings, relay_ports: list[int]) -> list[str]:
    """Refuse every relay client whose source address RELAY_ALLOW does not list."""
    if not settings.relay_allow or not relay_ports:
        return []
    nets = [ipaddress.ip_network(a, strict=False) for a in settings.relay_allow]
    v4 = [str(n) for n in nets if n.version == 4]
    v6 = [str(n) for n in nets if n.version == 6]
    ports = _ports(relay_ports)
    rules = []
    for family, listed in (("ip", v4), ("ip6", v6)):
        nfproto = "ipv4" if family == "ip" else "ipv6"
        if listed:
            allowed = "{ " + ", ".join(listed) + " }"
            rules.append(
                f"meta nfproto {nfproto} tcp dport {ports} {family} saddr != {allowed} "
                "counter reject with tcp reset"
            )
        else:
            rules.append(f"meta nfproto {nfproto} tcp dport {ports} counter reject with tcp reset")
    return rules


def ruleset(settings: Settings, names: InstanceNames) -> str:
    """The nft script: create-or-replace the instance's table in one transaction."""
    table = f"inet {names.firewall_table}"
    private = _ports(
        [g.api_port for g in settings.gateways] + [g.command_port for g in settings.gateways]
    )
    relay_ports = [g.relay_port for g in settings.gateways if g.relay_port]
    output = [
        f'oifname "lo" tcp dport {private} meta skuid != {{ root, {names.gateway_user} }} '
        "counter reject with tcp reset",
    ]
    input_ = [
        f'iifname != "lo" tcp dport {private} counter reject with tcp reset',
        *_relay_rules(settings, relay_ports),
    ]
    lines = [
        f"table {table} {{}}",  # so that the delete below never fails
        f"delete table {table}",
        f"table {table} {{",
        "  chain output {",
        "    type filter hook output priority filter; policy accept;",
        *(f"    {r}" for r in output),
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        *(f"    {r}" for r in input_),
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def guard_spec(settings: Settings, names: InstanceNames) -> UnitSpec:
    """The unit that holds the table while the instance runs: ExecStartPre loads it (the start
    job fails if it cannot); the main process loads it again every REAPPLY_S, so a table lost
    meanwhile (`systemctl restart nftables` flushes the whole ruleset) is back within that
    time; ExecStopPost deletes it. A process rather than RemainAfterExit=: ibgwd's stop signals
    it like every other child, so the table is gone by the time `systemctl stop` returns (a
    RemainAfterExit unit's stop job would wait behind ibgwd's own: children are Before= it)."""
    table = f"inet {names.firewall_table}"
    rules = ruleset(settings, names)
    keep = (
        f"while sleep {REAPPLY_S}; do "
        f'{NFT} "$1" || echo "ibgwd: could not re-apply the port guard (table {table})" >&2; '
        "done"
    )
    return UnitSpec(
        component=COMPONENT,
        name=names.unit(COMPONENT),
        description=f"ibgwd {names.instance}: local port guard (nftables table {table})",
        exec_start_pre=((NFT, rules),),
        exec_start=("/bin/sh", "-c", keep, "ibgwd-guard", rules),
        restart="always",
        restart_s=1.0,
        # SIGTERM ignored (and so for nft): ibgwd's stop signals every process of a unit that
        # is not gone yet, this one included, and the table must not outlive the instance.
        exec_stop_post=(
            (
                "/bin/sh",
                "-c",
                f'trap "" TERM; exec {NFT} "$1"',
                "ibgwd-guard-stop",
                f"table {table} {{}}\ndelete table {table}",
            ),
        ),
        user="root",
        # nftables.service starts with `flush ruleset`: load ours after it at boot.
        after=("nftables.service",),
        success_exit_status=(143,),  # SIGTERM from ibgwd's stop
        timeout_start_s=30.0,
    )


def in_container() -> bool:
    return CONTAINER_MARKER.exists() or bool(os.environ.get("container"))  # noqa: SIM112


def required(settings: Settings, *, container: bool) -> bool:
    """On a host the guard must hold; in a container (its own network namespace, no other
    local users) only RELAY_ALLOW makes it mandatory."""
    return not container or bool(settings.relay_allow)


def check_applied(result: str, settings: Settings, names: InstanceNames) -> None:
    """After the guard unit's start job: refuse to run unguarded where the guard is required."""
    if result == "done":
        log.info("event=guard_applied table=inet/%s", names.firewall_table)
        return
    what = (
        f"the nftables port guard (unit {names.unit(COMPONENT)}) could not be applied "
        f"(start job {result}; see `journalctl -u {names.unit(COMPONENT)}`)"
    )
    if required(settings, container=in_container()):
        because = (
            "RELAY_ALLOW is set and cannot be enforced"
            if settings.relay_allow
            else "without it every local user could reach the Gateway's API and command ports"
        )
        raise FirewallError(f"{what}: refusing to start, {because}")
    log.warning("event=guard_missing %s; running in a container without it", what)


def wait_job(
    result_of: Callable[[str], str],
    job: str | None,
    clock: Callable[[], float],
    timeout_s: float = 30.0,
) -> str:
    """Iterate the main context until systemd reports the job's end (JobRemoved); its result,
    "timeout" when it did not end in time. Only while ibgwd starts, before the main loop runs:
    ibgwd must not go on before the guard holds."""
    if not job:
        return "done"
    context = GLib.MainContext.default()
    deadline = clock() + timeout_s
    while result_of(job) == "timeout" and clock() < deadline:
        GLib.timeout_add(50, lambda: False)  # bounds each blocking iteration
        context.iteration(True)
    return result_of(job)
