"""Pure unit specs and their transient-unit properties."""

from __future__ import annotations

from pathlib import Path

from dasbus.typing import get_native
from settings_samples import DUAL_ENV, load

from ibgwd.config.model import Mode, Settings
from ibgwd.names import InstanceNames
from ibgwd.supervisor.files import apply_java_heap
from ibgwd.supervisor.supervisor import relay_specs, static_specs
from ibgwd.units.hooks import Stage, hook_spec
from ibgwd.units.properties import unit_properties
from ibgwd.units.spec import Paths

NAMES = InstanceNames("default")
PATHS = Paths(Path("/run/ibgwd/default"), Path("/var/lib/ibgwd/default"))
SECRETS = ("live-pass", "paper-pass", "vnc-pw-123")


def settings(tmp_path: Path, **extra: str) -> Settings:
    return load({**DUAL_ENV, "VNC_SERVER_PASSWORD": "vnc-pw-123", **extra}, tmp_path)


def test_dual_mode_has_one_ibc_unit_per_mode_and_a_relay_each(tmp_path: Path) -> None:
    s = settings(tmp_path)
    units = static_specs(s, NAMES, PATHS, {})
    assert sorted(units) == ["display", "ibc-live", "ibc-paper", "vnc"]
    assert units["ibc-live"].name == "ibgwd-default-ibc-live.service"
    assert "--mode=paper" in units["ibc-paper"].exec_start
    relays = relay_specs(s, NAMES)
    assert sorted(relays) == ["relay-live", "relay-paper"]
    argv = relays["relay-paper"].exec_start
    assert argv[1].startswith("TCP-LISTEN:4004,bind=127.0.0.1,") and "nodelay" in argv[1]
    assert argv[2] == "TCP:127.0.0.1:4002,nodelay"  # nodelay on both legs


def test_no_secret_in_any_unit_property(tmp_path: Path) -> None:
    s = settings(tmp_path, START_SCRIPTS="hooks")
    units = [*static_specs(s, NAMES, PATHS, {}).values(), *relay_specs(s, NAMES).values()]
    units.append(hook_spec(s, NAMES, PATHS, Stage.START))  # type: ignore[arg-type]
    for unit in units:
        props = unit_properties(unit, parent=NAMES.service, slice_name=NAMES.slice)
        text = repr([(k, get_native(v)) for k, v in props])
        for secret in SECRETS:
            assert secret not in text, (unit.name, secret)
    assert "-passwdfile" in static_specs(s, NAMES, PATHS, {})["vnc"].exec_start


def test_children_outlive_the_parent_and_are_ordered_before_it(tmp_path: Path) -> None:
    s = settings(tmp_path)
    spec = static_specs(s, NAMES, PATHS, {})["ibc-live"]
    props = dict(
        (k, get_native(v))
        for k, v in unit_properties(spec, parent=NAMES.service, slice_name=NAMES.slice)
    )
    assert "BindsTo" not in props and "ibgwd.service" not in props["PartOf"]  # outlives ibgwd
    assert props["LimitCORE"] == 0 and props["LimitCORESoft"] == 0  # holds the IB password
    assert props["Before"] == ["ibgwd.service"]
    assert "ibgwd.service" not in props["After"]  # After= would deadlock the notify start
    assert props["Slice"] == "ibgwd-default.slice"
    assert props["User"] == "ibgateway"
    assert "MemoryDenyWriteExecute" not in props  # the Gateway is a JIT-compiling JVM


def test_hooks_are_oneshot_units_and_absent_when_not_configured(tmp_path: Path) -> None:
    s = settings(tmp_path, X_SCRIPTS="/srv/x-hooks")
    assert hook_spec(s, NAMES, PATHS, Stage.START) is None
    hook = hook_spec(s, NAMES, PATHS, Stage.X)
    assert hook is not None and hook.service_type == "oneshot"
    assert hook.exec_start[-1] == "/srv/x-hooks"
    assert f"DISPLAY=:{s.display}" in hook.environment


def test_tunnel_only_mode_has_no_relay(tmp_path: Path) -> None:
    s = settings(tmp_path, SSH_TUNNEL="yes", SSH_USER_TUNNEL="u@bastion")
    assert relay_specs(s, NAMES) == {}
    assert s.gateway(Mode.LIVE).relay_port == 0


def test_custom_config_points_ibc_at_the_admins_own_file(tmp_path: Path) -> None:
    s = settings(tmp_path, CUSTOM_CONFIG="yes")
    ibc = static_specs(s, NAMES, PATHS, {})["ibc-paper"]
    assert "--ibc-ini=/var/lib/ibgwd/default/ibc/config-paper.ini" in ibc.exec_start


def test_java_heap_size_rewrites_any_previous_xmx_in_the_gateway_vmoptions(tmp_path: Path) -> None:
    tws = tmp_path / "Jts"
    vmoptions = tws / "ibgateway" / "10.37.1o" / "ibgateway.vmoptions"
    vmoptions.parent.mkdir(parents=True)
    vmoptions.write_text("-Xms256m\n-Xmx1024m\n-XX:+UseG1GC\n")
    s = settings(tmp_path, TWS_PATH=str(tws), JAVA_HEAP_SIZE="2048")
    apply_java_heap(s)
    assert vmoptions.read_text() == "-Xms256m\n-Xmx2048m\n-XX:+UseG1GC\n"
    apply_java_heap(settings(tmp_path, TWS_PATH=str(tws)))  # unset: left alone
    assert "-Xmx2048m" in vmoptions.read_text()


def test_gateway_gets_time_zone_display_and_its_settings_directory(tmp_path: Path) -> None:
    s = settings(tmp_path, TIME_ZONE="America/New_York", TWS_SETTINGS_PATH="/srv/ib")
    ibc = static_specs(s, NAMES, PATHS, {})["ibc-live"]
    assert "TZ=America/New_York" in ibc.environment
    assert f"DISPLAY=:{s.display}" in ibc.environment
    assert "--tws-settings-path=/srv/ib_live" in ibc.exec_start
    assert ibc.working_directory == "/srv/ib_live"
