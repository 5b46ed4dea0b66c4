"""The settings table: complete, self-consistent, and the generated docs are up to date."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ibgwd.config import docs, spec
from ibgwd.config.model import Settings

REPO = Path(__file__).resolve().parents[2]

OLD_IMAGE_NAMES = [
    "TWS_USERID",
    "TWS_PASSWORD",
    "TRADING_MODE",
    "TWS_USERID_PAPER",
    "TWS_PASSWORD_PAPER",
    "READ_ONLY_API",
    "VNC_SERVER_PASSWORD",
    "TWOFA_TIMEOUT_ACTION",
    "TWOFA_DEVICE",
    "TWOFA_EXIT_INTERVAL",
    "BYPASS_WARNING",
    "AUTO_RESTART_TIME",
    "AUTO_LOGOFF_TIME",
    "TWS_COLD_RESTART",
    "SAVE_TWS_SETTINGS",
    "RELOGIN_AFTER_TWOFA_TIMEOUT",
    "EXISTING_SESSION_DETECTED_ACTION",
    "ALLOW_BLIND_TRADING",
    "TWS_ACCEPT_INCOMING",
    "TWS_MASTER_CLIENT_ID",
    "TIME_ZONE",
    "TWS_SETTINGS_PATH",
    "CUSTOM_CONFIG",
    "JAVA_HEAP_SIZE",
    "SSH_TUNNEL",
    "SSH_OPTIONS",
    "SSH_ALIVE_INTERVAL",
    "SSH_ALIVE_COUNT",
    "SSH_PASSPHRASE",
    "SSH_REMOTE_PORT",
    "SSH_USER_TUNNEL",
    "SSH_RESTART",
    "SSH_VNC_PORT",
    "START_SCRIPTS",
    "X_SCRIPTS",
    "IBC_SCRIPTS",
    "DUAL_MODE",
    "IBC_PATH",
    "TWS_PATH",
    "IB_GATEWAY_VERSION",
]

OLD_IMAGE_DEFAULTS = {
    "TRADING_MODE": "paper",
    "TWOFA_TIMEOUT_ACTION": "exit",
    "TWOFA_EXIT_INTERVAL": "60",
    "RELOGIN_AFTER_TWOFA_TIMEOUT": "no",
    "EXISTING_SESSION_DETECTED_ACTION": "primary",
    "ALLOW_BLIND_TRADING": "no",
    "TWS_ACCEPT_INCOMING": "manual",
    "TIME_ZONE": "Etc/UTC",
    "SSH_ALIVE_INTERVAL": "20",
    "SSH_ALIVE_COUNT": "3",
    "SSH_RESTART": "5",
}


def test_every_old_image_variable_keeps_its_name() -> None:
    missing = [n for n in OLD_IMAGE_NAMES if n not in spec.BY_NAME]
    assert missing == []
    assert all(spec.BY_NAME[n].origin is spec.Origin.IMAGE for n in OLD_IMAGE_NAMES)


def test_old_image_defaults_are_kept() -> None:
    assert {n: spec.BY_NAME[n].default for n in OLD_IMAGE_DEFAULTS} == OLD_IMAGE_DEFAULTS


def test_the_secrets_are_exactly_the_passwords_and_the_passphrase() -> None:
    assert {
        "TWS_PASSWORD",
        "TWS_PASSWORD_PAPER",
        "VNC_SERVER_PASSWORD",
        "SSH_PASSPHRASE",
        "NOTIFY_URL",  # a Gotify/ntfy token travels in the URL's query
    } == spec.SECRET_NAMES


@pytest.mark.parametrize("setting", spec.SETTINGS, ids=lambda s: s.name)
def test_each_default_is_accepted_and_each_example_is_valid(setting: spec.Setting[object]) -> None:
    setting.kind.parse(setting.default)
    setting.kind.parse(setting.example)
    assert setting.description and setting.kind.accepted and setting.example


def test_every_settings_field_is_fed_by_a_setting() -> None:
    fed = {s.feeds.split("[")[0].split(".")[0] for s in spec.SETTINGS}
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields - fed == {"instance"}  # the instance comes from the unit name
    assert fed <= fields


def test_names_are_unique_upper_snake_and_do_not_clash_with_file_variants() -> None:
    names = [s.name for s in spec.SETTINGS]
    assert len(names) == len(set(names))
    assert all(n.isupper() and " " not in n for n in names)
    assert not any(n.endswith("_FILE") for n in names)


def test_committed_configuration_reference_is_generated_from_the_table() -> None:
    committed = (REPO / docs.MARKDOWN_PATH).read_text(encoding="utf-8")
    assert committed == docs.markdown(), "run: python -m ibgwd.config.docs --write ."


def test_committed_example_conffile_is_generated_from_the_table() -> None:
    committed = (REPO / docs.CONFFILE_PATH).read_text(encoding="utf-8")
    assert committed == docs.conffile(), "run: python -m ibgwd.config.docs --write ."


def test_reference_and_conffile_mention_every_setting() -> None:
    markdown, conffile = docs.markdown(), docs.conffile()
    for s in spec.SETTINGS:
        assert f"| `{s.name}`" in markdown
        assert f"\n#{s.name}=" in conffile
