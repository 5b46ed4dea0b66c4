"""Per-component sandbox properties of the transient children (ibgwd/units/sandbox.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from settings_samples import DUAL_ENV, load

from ibgwd.names import InstanceNames
from ibgwd.supervisor.supervisor import relay_specs, static_specs
from ibgwd.units.properties import unit_properties
from ibgwd.units.sandbox import Sandbox, for_component
from ibgwd.units.spec import Paths, UnitSpec

NAMES = InstanceNames("default")
PATHS = Paths(Path("/run/ibgwd/default"), Path("/var/lib/ibgwd/default"))
# D-Bus signatures systemd 252 accepts for these transient properties (a wrong one fails
# StartTransientUnit at run time).
SIGNATURES = {
    "RestrictAddressFamilies": "(bas)",
    "SystemCallFilter": "(bas)",
    "SystemCallErrorNumber": "i",
    "MemoryDenyWriteExecute": "b",
    "PrivateNetwork": "b",
    "PrivateTmp": "b",
    "IPAddressDeny": "a(iayu)",
    "ProtectProc": "s",
    "ProcSubset": "s",
    "ProtectSystem": "s",
}


def specs(tmp_path: Path) -> dict[str, UnitSpec]:
    s = load({**DUAL_ENV, "VNC_SERVER_PASSWORD": "vnc-pw-123"}, tmp_path)
    return {**static_specs(s, NAMES, PATHS, {}), **relay_specs(s, NAMES)}


def props(spec: UnitSpec) -> list[tuple[str, Any]]:
    return unit_properties(spec, parent=NAMES.service, slice_name=NAMES.slice)


def last(spec: UnitSpec) -> dict[str, Any]:
    """Property name -> the value systemd keeps (the last one set)."""
    return {k: v.unpack() for k, v in props(spec)}


def test_gateway_jvm_gets_neither_memory_deny_write_execute_nor_a_system_call_filter(
    tmp_path: Path,
) -> None:
    for mode in ("live", "paper"):
        p = last(specs(tmp_path)[f"ibc-{mode}"])
        assert "MemoryDenyWriteExecute" not in p and "SystemCallFilter" not in p
        assert set(p["RestrictAddressFamilies"][1]) >= {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_display_ibc_and_vnc_share_tmp_for_the_x_socket(tmp_path: Path) -> None:
    units = specs(tmp_path)
    for component in ("display", "ibc-live", "ibc-paper", "vnc"):
        assert "PrivateTmp" not in last(units[component]), component
    assert last(units["relay-paper"])["PrivateTmp"] is True


def test_display_has_no_network_and_only_unix_sockets(tmp_path: Path) -> None:
    p = last(specs(tmp_path)["display"])
    assert p["PrivateNetwork"] is True
    assert p["RestrictAddressFamilies"] == (True, ["AF_UNIX"])
    assert sorted(prefix for _family, _addr, prefix in p["IPAddressDeny"]) == [0, 0]
    assert "-nolisten" in specs(tmp_path)["display"].exec_start


def test_relay_protect_system_strict_overrides_the_common_full(tmp_path: Path) -> None:
    relay = specs(tmp_path)["relay-live"]
    values = [v.unpack() for k, v in props(relay) if k == "ProtectSystem"]
    assert values == ["full", "strict"]  # systemd applies them in order: strict wins


def test_sandbox_properties_have_the_signatures_systemd_expects(tmp_path: Path) -> None:
    seen = set()
    for spec in specs(tmp_path).values():
        for name, value in props(spec):
            if name in SIGNATURES:
                assert value.get_type_string() == SIGNATURES[name], (spec.name, name)
                seen.add(name)
    assert seen == set(SIGNATURES)


def test_unknown_kinds_get_only_the_common_hardening() -> None:
    for component in ("tunnel-live", "hook-start", "something"):
        assert for_component(component) == Sandbox()
    assert for_component("relay-paper") == for_component("relay-live")
