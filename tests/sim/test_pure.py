"""Pure pieces of the simulation: simulation.conf, jts.ini augmenting, schedules, negotiation."""

from __future__ import annotations

from datetime import datetime

import pytest

from ibgwd_sim import jtsini
from ibgwd_sim.gateway import parse_java_argv, user_dir_name
from ibgwd_sim.settings import SettingError, next_clock_time, next_closedown, next_cold_restart
from ibgwd_sim.simconf import Scenario, SimConfigError, TwoFactorFor, parse_sim_conf
from ibgwd_sim.tws_api import negotiate


def test_sim_conf_keys_are_case_insensitive_with_defaults() -> None:
    conf = parse_sim_conf("# c\nSCENARIO = API_SLOW\naccounts = DU1, DU2 ,\nLoginSeconds=0.5\n")
    assert conf.scenario is Scenario.API_SLOW
    assert conf.accounts == ("DU1", "DU2")
    assert conf.login_s == 0.5
    assert conf.two_factor_for is TwoFactorFor.NONE
    assert conf.restart_delay_s is None  # IBC's next wall-clock minute
    assert conf.shutdown_s == 8.0  # inside the observed 5-15 s
    assert conf.accept_password == ""


def test_sim_conf_clock_keys() -> None:
    conf = parse_sim_conf("ClockOffsetSeconds = -12.5\nClockWeekday = Sunday\nShutdownSeconds=0\n")
    assert (conf.clock_offset_s, conf.clock_weekday, conf.shutdown_s) == (-12.5, 6, 0.0)
    with pytest.raises(SimConfigError, match="ClockWeekday"):
        parse_sim_conf("ClockWeekday = someday")


def test_sim_conf_keeps_every_character_of_the_password() -> None:
    conf = parse_sim_conf("AcceptPassword = a #b! c:d=e \\ é€\n")
    assert conf.accept_password == "a #b! c:d=e \\ é€"


@pytest.mark.parametrize(
    ("text", "names"),
    [("Scenario=x", "Scenario"), ("LoginSeconds=-1", "LoginSeconds"), ("Foo=1", "foo")],
)
def test_sim_conf_errors_name_the_key(text: str, names: str) -> None:
    with pytest.raises(SimConfigError, match=names):
        parse_sim_conf(text)


def test_jts_ini_gets_missing_keys_in_their_sections() -> None:
    out = jtsini.augment("[Logon]\nLocale=de\n[Communication]\nPeer=x\n")
    assert out.splitlines() == [
        "[Logon]",
        "Locale=de",
        "s3store=true",
        "displayedproxymsg=1",
        "UseSSL=true",
        "[Communication]",
        "Peer=x",
        "[IBGateway]",
        "ApiOnly=true",
    ]
    assert jtsini.augment(out) == out


def test_schedules() -> None:
    thursday = datetime(2026, 1, 1, 12, 0)
    assert next_cold_restart("07:05", thursday) == datetime(2026, 1, 4, 7, 5)
    assert next_closedown("Friday 22:00", thursday) == datetime(2026, 1, 2, 22, 0)
    assert next_closedown("11:00", thursday) == datetime(2026, 1, 2, 11, 0)
    assert next_clock_time("11:59 PM", thursday) == datetime(2026, 1, 1, 23, 59)
    assert next_clock_time("12:30 am", thursday) == datetime(2026, 1, 2, 0, 30)
    assert next_clock_time('"11:45 PM"', thursday) is None
    with pytest.raises(SettingError, match="ColdRestartTime"):
        next_cold_restart("25:00", thursday)


@pytest.mark.parametrize(
    ("hello", "version"),
    [(b"v157..178", 178), (b"v100..226", 178), (b"v157..176 +PACEAPI", 176), (b"v190..200", None)],
)
def test_server_version_is_min_of_both_maxima(hello: bytes, version: int | None) -> None:
    assert negotiate(hello) == version


def test_java_argv_and_user_dir() -> None:
    java = parse_java_argv(
        ["-cp", "a.jar:/x/IBC.jar", "-Xmx768m", "-Drestart=abc", "ibcalpha.ibc.IbcGateway", "i"]
    )
    assert java.classpath == ("a.jar", "/x/IBC.jar")
    assert java.properties == {"restart": "abc"}
    assert (java.entry_point, java.args) == ("ibcalpha.ibc.IbcGateway", ("i",))
    name = user_dir_name("demo")
    assert len(name) == 40 and name.isalpha() and name.islower()
