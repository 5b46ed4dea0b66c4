"""Pure translation of a UnitSpec into StartTransientUnit's a(sv) properties."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from dasbus.typing import Bool, Byte, Int32, List, Str, Tuple, UInt32, UInt64, get_variant

from ibgwd.units.sandbox import for_component, sandbox_properties
from ibgwd.units.spec import UnitSpec

Property = tuple[str, Any]  # (name, GLib.Variant)

USEC = 1_000_000


def _exec(argvs: tuple[tuple[str, ...], ...]) -> Any:
    return get_variant(List[Tuple[Str, List[Str], Bool]], [(a[0], list(a), False) for a in argvs])


def _strings(values: tuple[str, ...] | list[str]) -> Any:
    return get_variant(List[Str], list(values))


def _address_list(entries: tuple[str, ...]) -> Any:
    out = []
    for entry in entries:
        net = ipaddress.ip_network(entry, strict=False)
        family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        out.append((int(family), list(net.network_address.packed), net.prefixlen))
    return get_variant(List[Tuple[Int32, List[Byte], UInt32]], out)


def hardening() -> list[Property]:
    """Sandbox every child gets. No MemoryDenyWriteExecute: the Gateway is a JIT-compiling JVM."""
    return [
        ("NoNewPrivileges", get_variant(Bool, True)),
        ("ProtectSystem", get_variant(Str, "full")),
        ("ProtectHome", get_variant(Str, "yes")),
        ("PrivateDevices", get_variant(Bool, True)),
        ("ProtectKernelTunables", get_variant(Bool, True)),
        ("ProtectKernelModules", get_variant(Bool, True)),
        ("ProtectKernelLogs", get_variant(Bool, True)),
        ("ProtectControlGroups", get_variant(Bool, True)),
        ("ProtectClock", get_variant(Bool, True)),
        ("ProtectHostname", get_variant(Bool, True)),
        ("RestrictSUIDSGID", get_variant(Bool, True)),
        ("RestrictRealtime", get_variant(Bool, True)),
        ("RestrictNamespaces", get_variant(UInt64, 0)),  # no namespace type allowed
        ("LockPersonality", get_variant(Bool, True)),
        ("CapabilityBoundingSet", get_variant(UInt64, 0)),
        ("SystemCallArchitectures", _strings(["native"])),
        ("UMask", get_variant(UInt32, 0o077)),
    ]


def unit_properties(
    spec: UnitSpec, *, parent: str, slice_name: str, description: str = ""
) -> list[Property]:
    """Properties for StartTransientUnit: in the instance's slice, ordered before the parent.

    No BindsTo=/PartOf= the parent: the IB session outlives ibgwd (a crash, a restart, an
    upgrade). `description` carries the spec digest the next ibgwd adopts the unit by."""
    props: list[Property] = [
        ("Description", get_variant(Str, description or spec.description)),
        ("Type", get_variant(Str, spec.service_type)),
        ("ExecStart", _exec((spec.exec_start,))),
        ("Slice", get_variant(Str, slice_name)),
        # Before (not After) the parent, and no requirement on it: at a shutdown every unit
        # gets a stop job, and the reverse order makes systemd stop ibgwd first, so ibgwd sends
        # IBC PAUSE or STOP before systemd stops whatever is left (docs/decisions.md).
        ("Before", _strings([parent])),
        ("After", _strings(list(spec.after))),
        ("PartOf", _strings(list(spec.part_of))),
        ("Restart", get_variant(Str, spec.restart)),
        ("RestartUSec", get_variant(UInt64, int(spec.restart_s * USEC))),
        ("StartLimitIntervalUSec", get_variant(UInt64, 0)),
        ("TimeoutStopUSec", get_variant(UInt64, int(spec.timeout_stop_s * USEC))),
        ("SyslogIdentifier", get_variant(Str, spec.name.removesuffix(".service"))),
        ("CollectMode", get_variant(Str, "inactive-or-failed")),
        ("User", get_variant(Str, spec.user)),
        ("Environment", _strings(spec.environment)),
        # No core dumps: IBC's JVM holds the IB password, x11vnc and ssh theirs.
        ("LimitCORE", get_variant(UInt64, 0)),
        ("LimitCORESoft", get_variant(UInt64, 0)),
        *hardening(),
        *sandbox_properties(for_component(spec.component)),
    ]
    if spec.timeout_start_s:
        props.append(("TimeoutStartUSec", get_variant(UInt64, int(spec.timeout_start_s * USEC))))
    if spec.exec_start_pre:
        props.append(("ExecStartPre", _exec(spec.exec_start_pre)))
    if spec.exec_start_post:
        props.append(("ExecStartPost", _exec(spec.exec_start_post)))
    if spec.working_directory:
        props.append(("WorkingDirectory", get_variant(Str, spec.working_directory)))
    if spec.success_exit_status:
        props.append(
            (
                "SuccessExitStatus",
                get_variant(Tuple[List[Int32], List[Int32]], (list(spec.success_exit_status), [])),
            )
        )
    if spec.read_write_paths:
        props.append(("ReadWritePaths", _strings(spec.read_write_paths)))
    if spec.ip_address_allow:
        props.append(("IPAddressAllow", _address_list(spec.ip_address_allow)))
        props.append(("IPAddressDeny", _address_list(("0.0.0.0/0", "::/0"))))
    return props
