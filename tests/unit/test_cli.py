"""The ibgwd command line: exit codes, messages, dry runs, and nothing written on bad input."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from ibgwd import cli, errors


def run(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(args, environ=env, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() else b""
        found[str(path)] = (st.st_mode, st.st_mtime_ns, data)
    return found


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "etc"
    directory.mkdir()
    launcher = tmp_path / "ibc" / "scripts" / "ibcstart.sh"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    (tmp_path / "Jts" / "ibgateway" / "10.37.1o").mkdir(parents=True)
    (directory / "ibgwd.conf").write_text(
        f"TWS_SETTINGS_PATH={tmp_path}/state/settings\nIB_GATEWAY_VERSION=10.37.1o\n"
        f"IBC_PATH={tmp_path}/ibc\nTWS_PATH={tmp_path}/Jts\n"
    )
    return directory


CREDS = {"TWS_USERID": "me", "TWS_PASSWORD": "hunter2"}


def test_check_config_valid_exits_0_with_a_summary(conf_dir: Path) -> None:
    code, out, err = run(
        ["--config-dir", str(conf_dir), "check-config"], CREDS | {"READ_ONLY_API": "no"}
    )
    assert (code, err) == (0, "")
    assert "trading_mode=paper" in out and "api 4002" in out


def test_check_config_warns_when_read_only_api_is_left_to_the_gateway(conf_dir: Path) -> None:
    """A fresh Gateway's API is read-only: every order fails with error 321."""
    code, out, err = run(["--config-dir", str(conf_dir), "check-config"], CREDS)
    assert code == 0 and "configuration valid" in out
    assert "WARNING: READ_ONLY_API is empty" in err and "error 321" in err
    assert "hunter2" not in err + out


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("TRADING_MODE", "both-ish"),
        ("READ_ONLY_API", "perhaps"),
        ("AUTO_RESTART_TIME", "25:00 PM"),
        ("AUTO_LOGOFF_TIME", "'11:00 PM'"),
        ("TWS_COLD_RESTART", "7pm"),
        ("TIME_ZONE", "Mars/Olympus"),
        ("TWOFA_TIMEOUT_ACTION", "wait"),
        ("EXISTING_SESSION_DETECTED_ACTION", "kick"),
        ("TWS_ACCEPT_INCOMING", "maybe"),
        ("API_PORT_PAPER", "99999"),
        ("RELAY_PORT_PAPER", "4002"),
        ("JAVA_HEAP_SIZE", "lots"),
        ("SSH_TUNNEL", "sometimes"),
        ("TWS_PASSWORD_FILE", "/nonexistent/pw"),
        ("TWS_PASSWORD", ""),
        ("PROBE_CLIENT_ID", "0"),
        ("RELAY_BIND_ADDRESS", "example.org"),
        ("RELAY_ALLOW", "10.0.0.300"),
        ("NOTIFY_URL", "ftp://secret-token@example.org/"),
        ("NOTIFY_AFTER", "soon"),
    ],
)
def test_check_config_bad_input_exits_78_names_the_setting_and_changes_nothing(
    conf_dir: Path, tmp_path: Path, setting: str, value: str
) -> None:
    before = snapshot(tmp_path)
    code, out, err = run(["--config-dir", str(conf_dir), "check-config"], {**CREDS, setting: value})
    assert code == errors.EX_CONFIG == 78
    lines = err.splitlines()
    assert any(line.startswith(f"ibgwd: {setting}:") for line in lines), err
    assert all(line.startswith("ibgwd: ") for line in lines)
    assert "hunter2" not in err + out
    assert snapshot(tmp_path) == before


def test_check_config_refuses_a_tunnel_without_user_at_host(conf_dir: Path) -> None:
    code, _, err = run(
        ["--config-dir", str(conf_dir), "check-config"], {**CREDS, "SSH_TUNNEL": "yes"}
    )
    assert code == 78 and "SSH_USER_TUNNEL" in err and "required when SSH_TUNNEL is set" in err


def test_check_config_reports_conffile_problems_too(conf_dir: Path) -> None:
    (conf_dir / "ibgwd.conf").write_text("TRADING_MODE=live\nTWS_PASSWORD='unclosed\n")
    code, _, err = run(["--config-dir", str(conf_dir), "check-config"], {"TWS_USERID": "me"})
    assert code == 78
    assert "TWS_PASSWORD: invalid value '<redacted>'" in err and "missing closing quote" in err


def test_bad_instance_name_exits_64_with_the_accepted_pattern(conf_dir: Path) -> None:
    for command in (["check-config"], ["render"], ["run"]):
        code, _, err = run(["--config-dir", str(conf_dir), *command, "--instance", "a/b"], CREDS)
        assert code == 64  # a usage error, as ibgwdctl --instance a/b
        assert "--instance: invalid value 'a/b'; accepted: a letter followed by" in err


def test_render_dry_run_prints_redacted_files_and_writes_nothing(
    conf_dir: Path, tmp_path: Path
) -> None:
    before = snapshot(tmp_path)
    out_dir = tmp_path / "out"
    code, out, _ = run(
        ["--config-dir", str(conf_dir), "render", "--dry-run", "--output", str(out_dir)], CREDS
    )
    assert code == 0
    assert f"### {out_dir}/ibc/config-paper.ini mode 0600" in out
    assert "IbPassword=<redacted>" in out and "hunter2" not in out
    assert "TimeZone=Etc/UTC" in out
    assert snapshot(tmp_path) == before


def test_render_output_writes_every_file_under_it_and_touches_nothing_else(
    conf_dir: Path, tmp_path: Path
) -> None:
    jts = tmp_path / "state" / "settings" / "jts.ini"
    out_dir = tmp_path / "out"
    code, out, _ = run(["--config-dir", str(conf_dir), "render", "--output", str(out_dir)], CREDS)
    assert code == 0
    config = out_dir / "ibc" / "config-paper.ini"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "IbPassword=hunter2\n" in config.read_text()
    moved = out_dir / jts.relative_to("/")
    assert "TimeZone" in moved.read_text() or moved.read_text()
    assert f"{moved} written" in out
    assert not (tmp_path / "state").exists()  # the real settings directory is left alone


def test_render_output_keeps_an_existing_jts_ini_under_it(conf_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    jts = out_dir / (tmp_path / "state" / "settings" / "jts.ini").relative_to("/")
    jts.parent.mkdir(parents=True)
    jts.write_text("user-edited\n")
    code, out, _ = run(["--config-dir", str(conf_dir), "render", "--output", str(out_dir)], CREDS)
    assert code == 0
    assert jts.read_text() == "user-edited\n"
    assert f"{jts} kept (exists)" in out


def test_render_with_custom_config_writes_nothing(conf_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    env = {**CREDS, "CUSTOM_CONFIG": "yes"}
    code, out, _ = run(["--config-dir", str(conf_dir), "render", "--output", str(out_dir)], env)
    assert code == 0 and "nothing rendered" in out and not out_dir.exists()


def test_render_that_cannot_write_exits_73(conf_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(
        ["--config-dir", str(conf_dir), "render", "--output", str(blocker / "sub")], CREDS
    )
    assert code == errors.EX_CANTCREAT and "cannot write" in err


def test_credentials_directory_comes_from_the_environment(conf_dir: Path, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "tws_password").write_text("from-credential\n")
    env = {"TWS_USERID": "me", "CREDENTIALS_DIRECTORY": str(creds), "READ_ONLY_API": "yes"}
    code, _, err = run(["--config-dir", str(conf_dir), "check-config"], env)
    assert (code, err) == (0, "")


def test_version_and_help_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"], environ={}) == 0
    assert "ibgwd" in capsys.readouterr().out
    assert cli.main(["--help"], environ={}) == 0
    text = capsys.readouterr().out
    for word in ("check-config", "render", "run", "ctl", "install-gateway", "examples:", "78"):
        assert word in text


def test_usage_error_exits_64(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["no-such-command"], environ={}) == errors.EX_USAGE
    assert "invalid choice" in capsys.readouterr().err


def test_ctl_and_install_gateway_get_the_remaining_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[tuple[str, list[str]]] = []

    def fake(name: str) -> object:
        def main(argv: list[str]) -> int:
            seen.append((name, argv))
            return 5

        return main

    import ibgwd.ctl
    import ibgwd.install

    monkeypatch.setattr(ibgwd.ctl, "main", fake("ctl"))
    monkeypatch.setattr(ibgwd.install, "main", fake("install"))
    assert cli.main(["ctl", "--instance", "x", "status", "--json"], environ={}) == 5
    assert cli.main(["--config-dir", str(tmp_path), "install-gateway", "--help"], environ={}) == 5
    assert seen == [("ctl", ["--instance", "x", "status", "--json"]), ("install", ["--help"])]


def test_run_calls_the_daemon_with_instance_and_config_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ibgwd.app

    calls: list[tuple[str, Path]] = []

    def fake_main(instance: str, config_dir: Path) -> int:
        calls.append((instance, config_dir))
        return 0

    monkeypatch.setattr(ibgwd.app, "main", fake_main)
    assert cli.main(["--config-dir", str(tmp_path), "run", "--instance", "live"], environ={}) == 0
    assert calls == [("live", tmp_path)]


def test_module_entry_point_runs_the_cli(conf_dir: Path) -> None:
    import subprocess
    import sys

    env = {**os.environ, **CREDS, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run(
        [sys.executable, "-m", "ibgwd", "--config-dir", str(conf_dir), "check-config"],
        env={**env, "TRADING_MODE": "nope"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78 and "TRADING_MODE" in result.stderr


def test_warnings_go_to_stderr_with_the_program_name(conf_dir: Path) -> None:
    conffile = conf_dir / "ibgwd.conf"
    conffile.write_text(conffile.read_text() + "TWS_PASSWORD=in-conf\n")
    conffile.chmod(0o644)
    code, _, err = run(["--config-dir", str(conf_dir), "check-config"], {"TWS_USERID": "me"})
    assert code == 0
    assert err.startswith("ibgwd: WARNING: conffile holds a secret") and "in-conf" not in err


# --- check-config that can be trusted ---------------------------------------------------


def test_unreadable_conffile_exits_77_with_one_clear_line(
    conf_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = Path.open

    def deny(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "ibgwd.conf":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", deny)
    code, _out, err = run(["--config-dir", str(conf_dir), "check-config"], CREDS)
    assert code == errors.EX_NOPERM == 77
    assert err == f"ibgwd: cannot read {conf_dir}/ibgwd.conf: permission denied (run as root)\n"


def test_missing_conffile_of_an_instance_is_named(conf_dir: Path) -> None:
    code, _, err = run(["--config-dir", str(conf_dir), "check-config", "--instance", "nothere"], {})
    assert code == 78
    assert f"no conffile {conf_dir}/nothere.conf" in err
    assert err.splitlines()[1].startswith(f"ibgwd: {conf_dir}/nothere.conf:")


def test_environment_names_that_look_like_settings_get_did_you_mean(conf_dir: Path) -> None:
    env = {**CREDS, "TWS_USERNAME": "me", "SSH_AUTH_SOCK": "/tmp/agent", "TRADINGMODE": "live"}
    code, _, err = run(["--config-dir", str(conf_dir), "check-config"], env)
    assert code == 0
    assert (
        "TWS_USERNAME is set in the environment but is not a setting; did you mean TWS_USERID?"
        in err
    )
    assert "TRADINGMODE" in err and "did you mean TRADING_MODE?" in err
    assert "SSH_AUTH_SOCK" not in err


@pytest.mark.parametrize(
    ("extra", "setting", "detail"),
    [
        ({"IBC_PATH": "/nonexistent/ibc"}, "IBC_PATH", "scripts/ibcstart.sh"),
        ({"IB_GATEWAY_VERSION": "10.99.9z"}, "IB_GATEWAY_VERSION", "no directory"),
        (
            {"SSH_TUNNEL": "yes", "SSH_USER_TUNNEL": "me@bastion", "SSH_KEY_DIR": "/nonexistent"},
            "SSH_KEY_DIR",
            "cannot list /nonexistent",
        ),
    ],
)
def test_paths_are_checked(
    conf_dir: Path, extra: dict[str, str], setting: str, detail: str
) -> None:
    code, _, err = run(["--config-dir", str(conf_dir), "check-config"], {**CREDS, **extra})
    assert code == 78
    line = next(line for line in err.splitlines() if line.startswith(f"ibgwd: {setting}:"))
    assert detail in line


def test_vnc_needs_x11vnc(conf_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    env = {**CREDS, "VNC_SERVER_PASSWORD": "vnc-secret-1"}
    code, _, err = run(["--config-dir", str(conf_dir), "check-config"], env)
    assert code == 78 and "x11vnc is not installed" in err and "vnc-secret-1" not in err


def test_show_lists_every_value_with_its_origin_and_redacts_secrets(conf_dir: Path) -> None:
    from ibgwd.config import spec

    code, out, _ = run(["--config-dir", str(conf_dir), "check-config", "--show"], CREDS)
    assert code == 0
    lines = {line.split("=", 1)[0]: line for line in out.splitlines() if "=" in line}
    assert set(spec.BY_NAME) <= set(lines)
    assert (
        lines["TWS_PASSWORD"].startswith("TWS_PASSWORD=<redacted>")
        and "# environment" in lines["TWS_PASSWORD"]
    )
    assert "hunter2" not in out
    assert lines["TRADING_MODE"].split("#")[1].strip() == "default"
    assert lines["IBC_PATH"].endswith(f"# {conf_dir}/ibgwd.conf")


def test_credentials_the_unit_loads_count_as_set_from_a_shell(
    conf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ibgwd.config import unitcreds

    secret = tmp_path / "credstore" / "tws_password"
    secret.parent.mkdir()
    secret.write_text("from-the-credstore\n")
    shown = f"LoadCredential=tws_password:{secret}\nLoadCredentialEncrypted=\n"
    monkeypatch.setattr(unitcreds, "unit_credentials", lambda service: unitcreds.parse_show(shown))
    env = {"TWS_USERID": "me", "READ_ONLY_API": "no"}
    code, out, err = run(["--config-dir", str(conf_dir), "check-config"], env)
    assert (code, err) == (0, "")
    assert (
        "TWS_PASSWORD: from credential tws_password (LoadCredential= of ibgwd.service) (read)"
        in out
    )
    assert "from-the-credstore" not in out


def test_an_encrypted_credential_counts_as_set_and_a_missing_source_is_named(
    conf_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ibgwd.config import unitcreds

    sealed = tmp_path / "tws_password.cred"
    sealed.write_bytes(b"\x00sealed")
    shown = (
        f"LoadCredentialEncrypted=tws_password:{sealed}\n"
        f"LoadCredential=vnc_server_password:{tmp_path}/nope\n"
    )
    monkeypatch.setattr(unitcreds, "unit_credentials", lambda service: unitcreds.parse_show(shown))
    code, out, err = run(["--config-dir", str(conf_dir), "check-config"], {"TWS_USERID": "me"})
    assert code == 78
    assert "TWS_PASSWORD: from credential tws_password (LoadCredentialEncrypted= of " in out
    assert "encrypted: counted as set" in out
    assert "VNC_SERVER_PASSWORD:" in err and f"source not found: {tmp_path}/nope" in err
    assert "TWS_PASSWORD:" not in err


def test_systemctl_show_output_is_parsed() -> None:
    from ibgwd.config import unitcreds

    creds = unitcreds.parse_show(
        "LoadCredential=tws_password:/etc/credstore/pw\n"
        "LoadCredential=ssh_passphrase\n"
        "LoadCredentialEncrypted=a:/x b:/y\n"
        "SetCredential=\n"
    )
    assert [(c.name, c.source, c.encrypted) for c in creds] == [
        ("tws_password", "/etc/credstore/pw", False),
        ("ssh_passphrase", "", False),
        ("a", "/x", True),
        ("b", "/y", True),
    ]


def test_credentials_read_from_systemd_properties() -> None:
    from ibgwd.config import unitcreds

    creds = unitcreds.from_properties(
        {
            "LoadCredential": [("tws_password", "/etc/credstore/pw")],
            "LoadCredentialEncrypted": [("vnc_server_password", "/etc/credstore.encrypted/v")],
            "SetCredential": [("notify_url", b"https://x/")],
            "SetCredentialEncrypted": [],
        }
    )
    assert [(c.name, c.source, c.encrypted, c.directive) for c in creds] == [
        ("tws_password", "/etc/credstore/pw", False, "LoadCredential"),
        ("vnc_server_password", "/etc/credstore.encrypted/v", True, "LoadCredentialEncrypted"),
        ("notify_url", "inline", False, "SetCredential"),
    ]


def test_a_bad_notify_url_never_shows_its_token(conf_dir: Path) -> None:
    env = {**CREDS, "NOTIFY_URL": "htps://ntfy.example/?token=tk_s3cret"}
    code, _, err = run(["--config-dir", str(conf_dir), "check-config"], env)
    assert code == 78 and "ibgwd: NOTIFY_URL: invalid value '<redacted>'" in err
    assert "tk_s3cret" not in err
