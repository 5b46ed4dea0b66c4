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
    (directory / "ibgwd.conf").write_text(
        f"TWS_SETTINGS_PATH={tmp_path}/state/settings\nIB_GATEWAY_VERSION=10.37.1o\n"
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


def test_bad_instance_name_exits_78_with_the_accepted_pattern(conf_dir: Path) -> None:
    for command in (["check-config"], ["render"], ["run"]):
        code, _, err = run(["--config-dir", str(conf_dir), *command, "--instance", "a/b"], CREDS)
        assert code == 78
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


def test_render_writes_config_ini_0600_and_keeps_an_existing_jts_ini(
    conf_dir: Path, tmp_path: Path
) -> None:
    jts = tmp_path / "state" / "settings" / "jts.ini"
    jts.parent.mkdir(parents=True)
    jts.write_text("user-edited\n")
    out_dir = tmp_path / "out"
    code, out, _ = run(["--config-dir", str(conf_dir), "render", "--output", str(out_dir)], CREDS)
    assert code == 0
    config = out_dir / "ibc" / "config-paper.ini"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "IbPassword=hunter2\n" in config.read_text()
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
