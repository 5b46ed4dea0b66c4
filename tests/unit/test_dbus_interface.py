"""The Manager facade without a bus: authorization coverage, delegation, properties, signals."""

# No `from __future__ import annotations`: dasbus reads the test interface's annotations.

from dataclasses import replace
from typing import Any

import pytest
from dasbus.server.interface import dbus_interface
from dasbus.server.property import PropertiesInterface
from dasbus.typing import Str, unwrap_variant
from dbus_samples import FixedAuthorizer, RecordingController, sample_status

from ibgwd.dbus.auth import (
    ACTION_MANAGE,
    DENY_ALL,
    authorization_of,
    exported_methods,
    requires_authorization,
    secure_by_default,
)
from ibgwd.dbus.errors import AccessDeniedError, InvalidArgumentError
from ibgwd.dbus.interface import ManagerInterface
from ibgwd.dbus.properties import SIGNATURES, property_values
from ibgwd.errors import ConfigError, Problem
from ibgwd.names import MANAGER_INTERFACE
from ibgwd.status import GatewayStatus, State

CALLER = {"sender": ":1.42"}

# One sample call per exported method; the controller call each must turn into.
SAMPLE_CALLS: dict[str, tuple[tuple[Any, ...], tuple[str, tuple[object, ...]]]] = {
    "Reload": ((), ("reload", ())),
    "Restart": (("paper", True), ("restart", (True, "paper"))),
    "ReconnectData": (("",), ("reconnect", ("data", ""))),
    "ReconnectAccount": (("live",), ("reconnect", ("account", "live"))),
}


def make(allow: bool = True) -> tuple[ManagerInterface, RecordingController, FixedAuthorizer]:
    controller = RecordingController()
    authorizer = FixedAuthorizer(allow)
    interface = ManagerInterface(controller, authorizer)
    controller.subscribe(interface.update)
    return interface, controller, authorizer


def test_every_exported_method_carries_an_authorization_decision() -> None:
    methods = exported_methods(ManagerInterface)
    assert methods, "the interface exports no methods?"
    for name in methods:
        assert authorization_of(getattr(ManagerInterface, name)) == ACTION_MANAGE, name


def test_sample_calls_cover_every_exported_method() -> None:
    assert sorted(SAMPLE_CALLS) == exported_methods(ManagerInterface)


def test_method_without_decorator_is_denied_by_default() -> None:
    called = []

    @secure_by_default
    @dbus_interface("org.ibgwd.Test1.Forgetful")
    class Forgetful(PropertiesInterface):  # type: ignore[misc]
        @property
        def authorizer(self) -> FixedAuthorizer:
            return FixedAuthorizer(True)

        def Forgotten(self, x: Str) -> None:  # noqa: N802
            called.append(x)

        @requires_authorization()
        def Guarded(self, x: Str) -> None:  # noqa: N802
            called.append(x)

    assert authorization_of(Forgetful.Forgotten) == DENY_ALL
    assert "Forgotten" in Forgetful.__dbus_xml__  # still exported, with its signature
    assert 'name="x"' in Forgetful.__dbus_xml__
    with pytest.raises(AccessDeniedError):
        Forgetful().Forgotten("a", call_info=CALLER)
    Forgetful().Guarded("b", call_info=CALLER)
    assert called == ["b"]


@pytest.mark.parametrize("method", sorted(SAMPLE_CALLS))
def test_denied_caller_gets_access_denied_and_controller_is_not_called(method: str) -> None:
    interface, controller, authorizer = make(allow=False)
    args, _ = SAMPLE_CALLS[method]
    with pytest.raises(AccessDeniedError, match="group ibgwd"):
        getattr(interface, method)(*args, call_info=CALLER)
    assert controller.calls == []
    assert authorizer.asked == [(":1.42", ACTION_MANAGE)]


@pytest.mark.parametrize("method", sorted(SAMPLE_CALLS))
def test_call_without_sender_is_denied_without_asking(method: str) -> None:
    interface, controller, authorizer = make(allow=True)
    args, _ = SAMPLE_CALLS[method]
    with pytest.raises(AccessDeniedError):
        getattr(interface, method)(*args, call_info={"sender": None})
    assert controller.calls == [] and authorizer.asked == []


@pytest.mark.parametrize("method", sorted(SAMPLE_CALLS))
def test_authorized_call_is_delegated_to_the_controller(method: str) -> None:
    interface, controller, _ = make(allow=True)
    args, expected = SAMPLE_CALLS[method]
    getattr(interface, method)(*args, call_info=CALLER)
    assert controller.calls == [expected]


def test_reload_returns_restarted_component_names() -> None:
    interface, controller, _ = make()
    controller.restarted = ["vnc", "relay-paper"]
    assert interface.Reload(call_info=CALLER) == ["vnc", "relay-paper"]


def test_reload_config_error_propagates_unchanged_for_the_error_mapper() -> None:
    interface, controller, _ = make()
    controller.error = ConfigError([Problem("TRADING_MODE", "bogus", "live, paper or both")])
    with pytest.raises(ConfigError, match="TRADING_MODE"):
        interface.Reload(call_info=CALLER)


@pytest.mark.parametrize("method", ["Restart", "ReconnectData", "ReconnectAccount"])
def test_unknown_mode_is_refused_naming_the_argument(method: str) -> None:
    interface, controller, _ = make()
    args = ("Paper", False) if method == "Restart" else ("Paper",)
    with pytest.raises(InvalidArgumentError, match="mode: invalid value 'Paper'; accepted"):
        getattr(interface, method)(*args, call_info=CALLER)
    assert controller.calls == []


def test_property_types_match_the_generated_xml() -> None:
    from dasbus.specification import DBusSpecification

    spec = DBusSpecification.from_xml(ManagerInterface.__dbus_xml__)
    generated = {
        m.name: m.type
        for m in spec.members
        if isinstance(m, DBusSpecification.Property) and m.interface_name == MANAGER_INTERFACE
    }
    assert generated == SIGNATURES
    assert set(property_values(sample_status())) == set(SIGNATURES)


def test_every_property_value_fits_its_signature() -> None:
    from dasbus.typing import get_variant

    interface, _, _ = make()
    for name, signature in SIGNATURES.items():
        get_variant(signature, getattr(interface, name))  # raises on a mismatch


def test_properties_read_the_snapshot() -> None:
    interface, _, _ = make()
    assert interface.State == "ready"
    assert interface.Ready is True
    assert interface.Reloading is False
    assert interface.Ports == {"paper": (4002, 4004)}
    assert interface.ApiUp == {"paper": True}
    assert interface.LastProbe == {"paper": (1_700_000_100.0, 0.015)}
    assert interface.GatewayStates == {"paper": "ready"}
    assert interface.RestartCounts == {"display": 0, "vnc": 3, "ibc-paper": 1}
    assert interface.Recoveries == {"paper": {"hard_restart": 0, "soft_restart": 2}}
    assert interface.Components[1] == (
        "vnc",
        "ibgwd-default-vnc.service",
        "active",
        "running",
        3,
        11,
    )


def _recorder(interface: ManagerInterface) -> list[dict[str, Any]]:
    emitted: list[dict[str, Any]] = []

    def on_changed(iface: str, changed: dict[str, Any], invalidated: list[str]) -> None:
        assert iface == MANAGER_INTERFACE and invalidated == []
        emitted.append({k: unwrap_variant(v) for k, v in changed.items()})

    interface.PropertiesChanged.connect(on_changed)
    return emitted


def test_properties_changed_carries_only_what_changed() -> None:
    interface, controller, _ = make()
    emitted = _recorder(interface)
    controller.publish(sample_status())  # same values: nothing
    controller.publish(sample_status(state=State.RESTARTING, ready=False))
    assert emitted == [{"State": "restarting", "Ready": False}]


def test_same_snapshot_twice_emits_nothing() -> None:
    interface, _, _ = make()
    emitted = _recorder(interface)
    assert interface.update(sample_status()) == []
    assert emitted == []


def test_gateway_change_updates_every_derived_property() -> None:
    interface, _, _ = make()
    emitted = _recorder(interface)
    status = sample_status()
    down = replace(status.gateways[0], api_up=False, state=State.DEGRADED)
    live = GatewayStatus(
        mode="live",
        state=State.STARTING,
        api_port=4001,
        relay_port=0,
        api_up=False,
        last_probe_timestamp=0.0,
        last_probe_latency_s=0.0,
        last_success_timestamp=0.0,
        probes_total=0,
        probe_failures_total=0,
        consecutive_failures=0,
    )
    interface.update(replace(status, gateways=(live, down)))
    assert emitted[0]["ApiUp"] == {"live": False, "paper": False}
    assert emitted[0]["Ports"] == {"live": (4001, 0), "paper": (4002, 4004)}
    assert emitted[0]["GatewayStates"] == {"live": "starting", "paper": "degraded"}
    per_mode = {"NextRestart", "NextFullLogin", "SoftRestartAt", "TwoFactorDeadline"}
    per_mode |= {"RestartReason", "ReadOnlyApi", "LoginFailures"}
    assert set(emitted[0]) == {
        "ApiUp",
        "Ports",
        "GatewayStates",
        "LastProbe",
        "Recoveries",
        *per_mode,
    }
    assert emitted[0]["ReadOnlyApi"] == {"live": "unset", "paper": "unset"}


def test_reloading_flag_is_exposed_and_announced() -> None:
    interface, controller, _ = make()
    emitted = _recorder(interface)
    controller.publish(sample_status(reloading=True))
    controller.publish(sample_status(reloading=False))
    assert emitted == [{"Reloading": True}, {"Reloading": False}]
