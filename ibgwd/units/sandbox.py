"""Per-component sandbox on top of the common hardening: what each kind of child may not do.

Measured effect and the reasons for what is left out: docs/security.md. Two limits hold for all:
the display, IBC and VNC share the X socket in /tmp/.X11-unix (no PrivateTmp; the X server
checks the instance's cookie, ibgwd/isolation/xauth.py), and the Gateway is a JIT-compiling JVM
(no MemoryDenyWriteExecute, no system call filter for IBC).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any

from dasbus.typing import Bool, Byte, Int32, List, Str, Tuple, UInt32, UInt64, get_variant

Property = tuple[str, Any]  # (name, GLib.Variant)

LOCAL = ("AF_UNIX",)
INTERNET = ("AF_UNIX", "AF_INET", "AF_INET6")


@dataclass(frozen=True)
class Sandbox:
    """Settings beyond properties.hardening(); empty or False = systemd's default."""

    address_families: tuple[str, ...] = ()  # RestrictAddressFamilies= allow list
    system_call_filter: tuple[str, ...] = ()  # SystemCallFilter= allow list
    memory_deny_write_execute: bool = False
    private_network: bool = False
    private_tmp: bool = False
    deny_all_ip: bool = False  # IPAddressDeny=any
    protect_proc: str = ""  # ProtectProc=
    proc_subset: str = ""  # ProcSubset=
    protect_system: str = ""  # overrides hardening()'s "full"
    capabilities: tuple[int, ...] = ()  # CapabilityBoundingSet= (overrides hardening()'s none)


# Xvfb -nolisten tcp: only the X socket, no network at all. Clients reach the path socket in
# /tmp/.X11-unix (the abstract one is per network namespace; libxcb falls back to the path).
DISPLAY = Sandbox(
    address_families=LOCAL,
    system_call_filter=("@system-service",),
    memory_deny_write_execute=True,
    private_network=True,
    deny_all_ip=True,
    protect_proc="invisible",
    proc_subset="pid",
)
# IBC + the Gateway: a JVM talking to IB's servers. AF_NETLINK: glibc's getaddrinfo/getifaddrs
# and Java's NetworkInterface enumerate interfaces with it.
IBC = Sandbox(
    address_families=(*INTERNET, "AF_NETLINK"),
    protect_proc="invisible",
)
# x11vnc: the X socket and its RFB listener.
VNC = Sandbox(
    address_families=INTERNET,
    system_call_filter=("@system-service",),
    memory_deny_write_execute=True,
    protect_proc="invisible",
    proc_subset="pid",
)
# socat: TCP in, TCP to 127.0.0.1 out; reads and writes no file.
RELAY = Sandbox(
    address_families=INTERNET,
    system_call_filter=("@system-service",),
    memory_deny_write_execute=True,
    private_tmp=True,
    protect_proc="invisible",
    proc_subset="pid",
    protect_system="strict",
)
# nft loading the instance's port guard: root with CAP_NET_ADMIN only, netlink only, in the host's
# network namespace (a private one would guard nothing).
CAP_NET_ADMIN = 12
GUARD = Sandbox(
    address_families=("AF_UNIX", "AF_NETLINK"),
    system_call_filter=("@system-service",),
    memory_deny_write_execute=True,
    deny_all_ip=True,
    protect_proc="invisible",
    proc_subset="pid",
    protect_system="strict",
    private_tmp=True,
    capabilities=(CAP_NET_ADMIN,),
)
BY_KIND = {"display": DISPLAY, "ibc": IBC, "vnc": VNC, "relay": RELAY, "guard": GUARD}


def for_component(component: str) -> Sandbox:
    """The sandbox of a component (display, vnc, ibc-live, relay-paper, ...); unknown: none."""
    return BY_KIND.get(component.split("-", 1)[0], Sandbox())


def _deny_all_ip() -> Any:
    entries = [(int(socket.AF_INET), [0] * 4, 0), (int(socket.AF_INET6), [0] * 16, 0)]
    return get_variant(List[Tuple[Int32, List[Byte], UInt32]], entries)


def sandbox_properties(box: Sandbox) -> list[Property]:
    """StartTransientUnit properties for ``box`` (appended after hardening(): later wins)."""
    props: list[Property] = []
    if box.address_families:
        props.append(
            (
                "RestrictAddressFamilies",
                get_variant(Tuple[Bool, List[Str]], (True, list(box.address_families))),
            )
        )
    if box.system_call_filter:
        props.append(
            (
                "SystemCallFilter",
                get_variant(Tuple[Bool, List[Str]], (True, list(box.system_call_filter))),
            )
        )
        # A call outside the list fails with EPERM instead of killing the process (SIGSYS).
        props.append(("SystemCallErrorNumber", get_variant(Int32, errno.EPERM)))
    if box.memory_deny_write_execute:
        props.append(("MemoryDenyWriteExecute", get_variant(Bool, True)))
    if box.private_network:
        props.append(("PrivateNetwork", get_variant(Bool, True)))
    if box.private_tmp:
        props.append(("PrivateTmp", get_variant(Bool, True)))
    if box.deny_all_ip:
        props.append(("IPAddressDeny", _deny_all_ip()))
    if box.protect_proc:
        props.append(("ProtectProc", get_variant(Str, box.protect_proc)))
    if box.proc_subset:
        props.append(("ProcSubset", get_variant(Str, box.proc_subset)))
    if box.protect_system:
        props.append(("ProtectSystem", get_variant(Str, box.protect_system)))
    if box.capabilities:
        mask = sum(1 << cap for cap in box.capabilities)
        props.append(("CapabilityBoundingSet", get_variant(UInt64, mask)))
    return props
