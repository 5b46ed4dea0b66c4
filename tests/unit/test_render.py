"""Rendering config.ini and jts.ini: golden files, escaping, custom config, redaction."""

from __future__ import annotations

import os
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from settings_samples import BASE_ENV, DUAL_ENV, load

from ibgwd.config.model import Mode
from ibgwd.render.properties import escape_value
from ibgwd.render.render import RenderedFile, render_files
from ibgwd.render.write import redacted_text

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "render"
RUNTIME = Path("/run/ibgwd/default")
FULL_ENV = {
    **BASE_ENV,
    "TRADING_MODE": "live",
    "READ_ONLY_API": "yes",
    "BYPASS_WARNING": "no",
    "TWS_MASTER_CLIENT_ID": "100",
    "TWOFA_DEVICE": "IB Key",
    "TWOFA_EXIT_INTERVAL": "90",
    "RELOGIN_AFTER_TWOFA_TIMEOUT": "yes",
    "AUTO_RESTART_TIME": "11:45 pm",
    "TWS_COLD_RESTART": "7:05",
    "SAVE_TWS_SETTINGS": "Every 30 mins",
    "EXISTING_SESSION_DETECTED_ACTION": "primaryoverride",
    "TWS_ACCEPT_INCOMING": "accept",
    "ALLOW_BLIND_TRADING": "yes",
    "TIME_ZONE": "America/New_York",
}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"golden {name} differs (UPDATE_GOLDEN=1)"


def by_name(files: tuple[RenderedFile, ...]) -> dict[str, RenderedFile]:
    return {f"{f.path.parent.name}/{f.path.name}": f for f in files}


def test_single_paper_mode_matches_golden_files(tmp_path: Path) -> None:
    files = by_name(render_files(load(BASE_ENV, tmp_path), runtime_dir=RUNTIME))
    assert set(files) == {"ibc/config-paper.ini", "settings/jts.ini"}
    check_golden("config-paper.ini", files["ibc/config-paper.ini"].text)
    check_golden("jts-paper.ini", files["settings/jts.ini"].text)


def test_single_live_mode_with_every_ibc_setting_matches_golden(tmp_path: Path) -> None:
    files = by_name(render_files(load(FULL_ENV, tmp_path), runtime_dir=RUNTIME))
    check_golden("config-live-full.ini", files["ibc/config-live.ini"].text)
    check_golden("jts-new-york.ini", files["settings/jts.ini"].text)


def test_dual_mode_renders_a_pair_with_live_and_paper_credentials(tmp_path: Path) -> None:
    env = {**DUAL_ENV, "TWS_SETTINGS_PATH": "/srv/ib/settings"}
    files = by_name(render_files(load(env, tmp_path), runtime_dir=RUNTIME))
    assert set(files) == {
        "ibc/config-live.ini",
        "ibc/config-paper.ini",
        "settings_live/jts.ini",
        "settings_paper/jts.ini",
    }
    check_golden("config-dual-live.ini", files["ibc/config-live.ini"].text)
    check_golden("config-dual-paper.ini", files["ibc/config-paper.ini"].text)
    check_golden("jts-paper.ini", files["settings_paper/jts.ini"].text)
    assert files["settings_live/jts.ini"].path == Path("/srv/ib/settings_live/jts.ini")


def test_config_ini_is_a_secret_file_and_jts_ini_is_written_only_if_missing(
    tmp_path: Path,
) -> None:
    config, jts = render_files(load(BASE_ENV, tmp_path), runtime_dir=RUNTIME)
    assert config.path == RUNTIME / "ibc" / "config-paper.ini"
    assert (config.mode, config.secret, config.only_if_missing) == (0o600, True, False)
    assert (jts.mode, jts.secret, jts.only_if_missing) == (0o600, False, True)


def test_custom_config_renders_nothing(tmp_path: Path) -> None:
    settings = load({**BASE_ENV, "CUSTOM_CONFIG": "yes"}, tmp_path)
    assert render_files(settings, runtime_dir=RUNTIME) == ()


def test_passwords_are_escaped_and_redacted_and_never_in_repr(tmp_path: Path) -> None:
    env = {**BASE_ENV, "TWS_PASSWORD": " pa=ss:w#rd!\\ €密 ", "TWS_USERID": "user:名"}
    (config, _jts) = render_files(load(env, tmp_path), runtime_dir=RUNTIME)
    assert "IbPassword=\\ pa\\=ss\\:w\\#rd\\!\\\\ \\u20ac\\u5bc6\\ \n" in config.text
    assert "IbLoginId=user\\:\\u540d\n" in config.text
    assert config.text.isascii()
    redacted = redacted_text(config)
    assert "IbPassword=<redacted>\n" in redacted and "ss\\:w" not in redacted
    assert "pa=ss" not in repr(config) and "pa\\=ss" not in repr(config)


def test_every_config_ini_line_is_a_comment_a_blank_or_a_key(tmp_path: Path) -> None:
    for file in render_files(load(FULL_ENV, tmp_path), runtime_dir=RUNTIME):
        if file.path.name.startswith("config-"):
            for line in file.text.splitlines():
                assert line == "" or line.startswith("#") or re.fullmatch(r"[A-Za-z]+=.*", line)
            keys = [line.split("=")[0] for line in file.text.splitlines() if "=" in line]
            assert len(keys) == len(set(keys))
            assert sum(k.startswith("Bypass") for k in keys) == 9
            assert "CommandServerPort=7462" in file.text and "BindAddress=127.0.0.1" in file.text


def test_paper_gateway_gets_its_own_ports(tmp_path: Path) -> None:
    settings = load(DUAL_ENV, tmp_path)
    paper = [f for f in render_files(settings, runtime_dir=RUNTIME) if "paper.ini" in f.path.name]
    assert settings.gateway(Mode.PAPER).api_port == 4002
    assert "OverrideTwsApiPort=4002\n" in paper[0].text
    assert "CommandServerPort=7463\n" in paper[0].text


def unescape(text: str) -> str:
    """A minimal java.util.Properties value reader (the Java test checks the real one)."""
    units: list[int] = []
    simple = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
    i = 0
    while i < len(text):
        if text[i] == "\\":
            nxt = text[i + 1]
            if nxt == "u":
                units.append(int(text[i + 2 : i + 6], 16))
                i += 6
                continue
            units.append(ord(simple.get(nxt, nxt)))
            i += 2
        else:
            units.append(ord(text[i]))
            i += 1
    data = b"".join(u.to_bytes(2, "big") for u in units)
    return data.decode("utf-16-be", "surrogatepass")


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_escaped_values_are_printable_ascii_and_read_back_unchanged(value: str) -> None:
    escaped = escape_value(value)
    assert all(" " <= c <= "~" for c in escaped)
    assert not escaped.startswith(" ")
    assert unescape(escaped) == value
