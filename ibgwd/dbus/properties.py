"""Pure translation of a Status snapshot into the Manager interface's D-Bus property values.

Every value here is plain data (str, bool, int, float, tuples, dicts); nothing in a Status
holds a secret, and nothing but Status fields is read, so no property can leak one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ibgwd.status import Status

PropertyValues = Mapping[str, Any]

# Property name -> D-Bus signature, in the order ibgwdctl shows them (pinned by a unit test
# against the interface class, so the two cannot drift).
SIGNATURES: dict[str, str] = {
    "Instance": "s",
    "Version": "s",
    "State": "s",
    "Ready": "b",
    "Reloading": "b",
    "StatusText": "s",
    "TradingMode": "s",
    "GatewayStates": "a{ss}",
    "ApiUp": "a{sb}",
    "Ports": "a{s(qq)}",
    "LastProbe": "a{s(dd)}",
    "Components": "a(ssssuu)",
    "RestartCounts": "a{su}",
    "Recoveries": "a{sa{su}}",
    "StartedTimestamp": "d",
    "ReadyTimestamp": "d",
    "GatewayVersion": "s",
    "IbcVersion": "s",
    "NextRestart": "a{sd}",
    "NextFullLogin": "a{sd}",
    "SoftRestartAt": "a{sd}",
    "TwoFactorDeadline": "a{sd}",
    "RestartReason": "a{ss}",
    "ReadOnlyApi": "a{ss}",
    "LoginFailures": "a{su}",
}


def _read_only(value: bool | None) -> str:
    return "unset" if value is None else ("yes" if value else "no")


def _u32(value: int) -> int:
    return min(max(int(value), 0), 0xFFFFFFFF)


def _u16(value: int) -> int:
    return min(max(int(value), 0), 0xFFFF)


def property_values(status: Status) -> dict[str, Any]:
    """All Manager properties of one snapshot, keyed by D-Bus property name."""
    gateways = status.gateways
    return {
        "Instance": status.instance,
        "Version": status.version,
        "State": status.state.value,
        "Ready": bool(status.ready),
        "Reloading": bool(status.reloading),
        "StatusText": status.status_text,
        "TradingMode": status.trading_mode,
        "GatewayStates": {g.mode: g.state.value for g in gateways},
        "ApiUp": {g.mode: bool(g.api_up) for g in gateways},
        "Ports": {g.mode: (_u16(g.api_port), _u16(g.relay_port)) for g in gateways},
        "LastProbe": {
            g.mode: (float(g.last_probe_timestamp), float(g.last_probe_latency_s)) for g in gateways
        },
        "Components": [
            (c.name, c.unit, c.active_state, c.sub_state, _u32(c.restarts), _u32(c.main_pid))
            for c in status.components
        ],
        "RestartCounts": {c.name: _u32(c.restarts) for c in status.components},
        "Recoveries": {
            g.mode: {kind: _u32(count) for kind, count in sorted(g.recoveries.items())}
            for g in gateways
        },
        "StartedTimestamp": float(status.started_timestamp),
        "ReadyTimestamp": float(status.ready_timestamp),
        "GatewayVersion": status.gateway_version,
        "IbcVersion": status.ibc_version,
        "NextRestart": {g.mode: float(g.next_restart_timestamp) for g in gateways},
        "NextFullLogin": {g.mode: float(g.next_cold_restart_timestamp) for g in gateways},
        "SoftRestartAt": {g.mode: float(g.soft_restart_timestamp) for g in gateways},
        "TwoFactorDeadline": {g.mode: float(g.twofa_deadline_timestamp) for g in gateways},
        "RestartReason": {g.mode: g.restart_reason for g in gateways},
        "ReadOnlyApi": {g.mode: _read_only(g.read_only_api) for g in gateways},
        "LoginFailures": {g.mode: _u32(g.login_failures) for g in gateways},
    }


def changed_properties(old: PropertyValues, new: PropertyValues) -> list[str]:
    """Names whose value differs between two snapshots (PropertiesChanged emits on change only)."""
    return [name for name in SIGNATURES if old.get(name) != new.get(name)]
