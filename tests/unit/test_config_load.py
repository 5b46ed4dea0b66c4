"""Loading settings: sources, precedence, defaults, and every validation rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from settings_samples import BASE_ENV, DUAL_ENV, load

from ibgwd.config.model import Mode, SshTunnel, TradingMode
from ibgwd.config.validate import default_display
from ibgwd.errors import ConfigError


def problems_of(error: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.setting: str(p) for p in error.value.problems}


def test_defaults_match_the_old_image_and_the_ibgwd_additions(tmp_path: Path) -> None:
    s = load(BASE_ENV, tmp_path)
    assert s.trading_mode is TradingMode.PAPER
    (paper,) = s.gateways
    assert (paper.mode, paper.api_port, paper.relay_port, paper.command_port) == (
        Mode.PAPER,
        4002,
        4004,
        7463,
    )
    assert paper.credentials.user == "liveuser"  # single paper mode falls back to TWS_USERID
    assert paper.ssh_remote_port == 4002
    assert s.twofa_timeout_action == "exit" and s.twofa_exit_interval == 60
    assert s.existing_session_action == "primary" and s.accept_incoming == "manual"
    assert not s.relogin_after_twofa_timeout and not s.allow_blind_trading
    assert s.time_zone == "Etc/UTC" and s.display == 1
    assert s.metrics_address == "127.0.0.1:9108"
    assert (s.probe_interval_s, s.probe_timeout_s, s.probe_failure_threshold) == (10, 3, 3)
    assert s.probe_client_id == 999 and s.login_timeout_s == 600
    assert (s.recovery_max_per_hour, s.recovery_backoff_s) == (4, 30)
    assert s.ssh.key_dir == "/var/lib/ibgwd/default/ssh"
    assert (s.ssh.alive_interval, s.ssh.alive_count, s.ssh.restart_s) == (20, 3, 5)
    assert s.vnc_password is None and not s.vnc_enabled
    assert (s.ibc_path, s.tws_path) == ("/opt/ibgwd/ibc/current", "/opt/ibgwd")


def test_dual_mode_pairs_live_and_paper_with_their_own_credentials_and_paths(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in DUAL_ENV.items() if k != "TWS_SETTINGS_PATH"}
    s = load(env, tmp_path, instance="acct1")
    live, paper = s.gateways
    assert (live.mode, paper.mode) == (Mode.LIVE, Mode.PAPER)
    assert live.credentials.user == "liveuser" and paper.credentials.user == "paperuser"
    assert paper.credentials.password.reveal() == "paper-pass"
    assert live.settings_path == "/var/lib/ibgwd/acct1/settings_live"
    assert paper.settings_path == "/var/lib/ibgwd/acct1/settings_paper"
    assert (live.api_port, live.relay_port, live.command_port) == (4001, 4003, 7462)
    assert s.metrics_address == ""  # only the default instance serves metrics by default
    assert s.display == default_display("acct1") and 10 <= s.display < 510


def test_dual_mode_yes_means_trading_mode_both(tmp_path: Path) -> None:
    env = {**DUAL_ENV, "TRADING_MODE": "paper", "DUAL_MODE": "yes"}
    assert load(env, tmp_path).trading_mode is TradingMode.BOTH


def test_environment_overrides_conffile_and_file_and_credential_override_environment(
    tmp_path: Path,
) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("from-file\n\n")
    conf = "TRADING_MODE=live\nTWS_USERID=conf-user\nAUTO_RESTART_TIME='11:45 pm'\n"
    env = {**BASE_ENV, "TWS_USERID": "env-user", "TWS_PASSWORD": ""}
    env["TWS_PASSWORD_FILE"] = str(pw_file)
    s = load(env, tmp_path, conf=conf)
    assert s.trading_mode is TradingMode.LIVE  # from the conffile
    assert s.gateways[0].credentials.user == "env-user"
    assert s.gateways[0].credentials.password.reveal() == "from-file"
    assert s.auto_restart_time == "11:45 PM"
    s = load(env, tmp_path, conf=conf, credentials={"tws_password": "from-cred\n"})
    assert s.gateways[0].credentials.password.reveal() == "from-cred"


def test_conffile_quotes_are_stripped_like_an_environment_file(tmp_path: Path) -> None:
    conf = (
        "# comment\n; other comment\n\n"
        'TWS_PASSWORD="a \\"quoted\\" #pass\\\\ "\n'
        "TWS_USERID='  spaced $user  '\n"
        "export TWOFA_DEVICE = IB Key  \n"
        "SSH_OPTIONS=-o Compression=yes # not a comment\n"
    )
    env = {k: v for k, v in BASE_ENV.items() if k not in ("TWS_USERID", "TWS_PASSWORD")}
    s = load(env, tmp_path, conf=conf)
    creds = s.gateways[0].credentials
    assert creds.password.reveal() == 'a "quoted" #pass\\ '
    assert creds.user == "  spaced $user  "
    assert s.twofa_device == "IB Key"
    assert s.ssh.options == "-o Compression=yes # not a comment"


def test_unrelated_environment_variables_are_ignored(tmp_path: Path) -> None:
    s = load({**BASE_ENV, "PATH": "/bin", "SOME_TYPO_SETTING": "x", "TZ": "bogus"}, tmp_path)
    assert s.time_zone == "Etc/UTC"


def test_unknown_conffile_setting_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load(BASE_ENV, tmp_path, conf="TRADNG_MODE=live\nTZ=Etc/UTC\nnot a line\n")
    found = problems_of(e)
    assert "did you mean TRADING_MODE?" in found["TRADNG_MODE"]
    assert "TZ" not in found  # an old-image variable ibgwd ignores
    assert any("line 3" in k for k in found)


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("TRADING_MODE", "demo", "live | paper | both"),
        ("READ_ONLY_API", "maybe", "yes | no"),
        ("ALLOW_BLIND_TRADING", "1", "yes | no"),
        ("AUTO_RESTART_TIME", '"11:45 PM"', "remove the quotes"),
        ("AUTO_RESTART_TIME", "23:45", "hh:mm AM or hh:mm PM"),
        ("AUTO_LOGOFF_TIME", "13:00 PM", "hh:mm AM or hh:mm PM"),
        ("TWS_COLD_RESTART", "7:05 AM", "hh:mm (24-hour clock)"),
        ("TWS_COLD_RESTART", "24:00", "hh:mm (24-hour clock)"),
        ("TIME_ZONE", "Europe/Atlantis", "tz database"),
        ("TIME_ZONE", "../../etc/passwd", "tz database"),
        ("TWOFA_TIMEOUT_ACTION", "retry", "exit | restart"),
        ("EXISTING_SESSION_DETECTED_ACTION", "kick", "primaryoverride"),
        ("TWS_ACCEPT_INCOMING", "allow", "accept | reject | manual"),
        ("API_PORT_PAPER", "0", "1 to 65535"),
        ("API_PORT_PAPER", "70000", "1 to 65535"),
        ("COMMAND_PORT_PAPER", "http", "1 to 65535"),
        ("JAVA_HEAP_SIZE", "1g", "MiB"),
        ("JAVA_HEAP_SIZE", "16", "MiB"),
        ("RELAY_BIND_ADDRESS", "localhost", "address literal"),
        ("VNC_BIND_ADDRESS", "256.0.0.1", "address literal"),
        ("RELAY_ALLOW", "10.0.0.0/8, example.org", "bad entry 'example.org'"),
        ("METRICS_ADDRESS", "localhost:9108", "ADDRESS:PORT"),
        ("METRICS_ADDRESS", "::1:9108", "[address]:port"),
        ("PROBE_CLIENT_ID", "0", "1 to 2147483647"),
        ("PROBE_INTERVAL", "fast", "seconds"),
        ("TWS_SETTINGS_PATH", "relative/dir", "absolute path"),
        ("IB_GATEWAY_VERSION", "../10.37", "one directory"),
        ("SSH_TUNNEL", "always", "yes | both"),
        ("SSH_OPTIONS", "-o 'unbalanced", "ssh command line"),
    ],
)
def test_bad_value_names_the_setting_the_value_and_what_is_accepted(
    tmp_path: Path, setting: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load({**BASE_ENV, setting: value}, tmp_path)
    found = problems_of(e)
    assert setting in found, found
    assert repr(value.strip()) in found[setting] or repr(value) in found[setting]
    assert expected in found[setting]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    env = {
        "TRADING_MODE": "both",
        "TIME_ZONE": "Nowhere",
        "AUTO_RESTART_TIME": "noon",
        "API_PORT_LIVE": "x",
        "PROBE_CLIENT_ID": "7",
        "TWS_MASTER_CLIENT_ID": "7",
    }
    with pytest.raises(ConfigError) as e:
        load(env, tmp_path)
    assert set(problems_of(e)) >= {
        "TIME_ZONE",
        "AUTO_RESTART_TIME",
        "API_PORT_LIVE",
        "PROBE_CLIENT_ID",
        "TWS_USERID",
        "TWS_PASSWORD",
        "TWS_USERID_PAPER",
        "TWS_PASSWORD_PAPER",
        "IB_GATEWAY_VERSION",
    }


def test_missing_paper_credentials_in_dual_mode_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load({**BASE_ENV, "TRADING_MODE": "both"}, tmp_path)
    found = problems_of(e)
    assert "required for the paper gateway" in found["TWS_USERID_PAPER"]
    assert "TWS_PASSWORD_PAPER_FILE" in found["TWS_PASSWORD_PAPER"]


def test_custom_config_does_not_require_credentials(tmp_path: Path) -> None:
    env = {"CUSTOM_CONFIG": "YES", "IB_GATEWAY_VERSION": "10.37.1o"}
    assert load(env, tmp_path).custom_config


def test_port_collisions_name_both_settings(tmp_path: Path) -> None:
    env = {**DUAL_ENV, "RELAY_PORT_PAPER": "4001", "VNC_SERVER_PASSWORD": "v", "VNC_PORT": "7462"}
    with pytest.raises(ConfigError) as e:
        load(env, tmp_path)
    found = problems_of(e)
    assert "also used by API_PORT_LIVE" in found["RELAY_PORT_PAPER"]
    assert "also used by COMMAND_PORT_LIVE" in found["VNC_PORT"]


def test_ports_of_unused_components_do_not_collide(tmp_path: Path) -> None:
    # paper only: live ports unused; no VNC password: VNC port unused; tunnel-only: no relay
    env = {
        **BASE_ENV,
        "API_PORT_LIVE": "4002",
        "VNC_PORT": "4004",
        "SSH_TUNNEL": "yes",
        "SSH_USER_TUNNEL": "t@bastion",
        "RELAY_PORT_PAPER": "7463",
    }
    s = load(env, tmp_path)
    assert s.gateways[0].relay_port == 0 and not s.relay_enabled


def test_metrics_port_collision_and_empty_metrics_address_turns_metrics_off(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as e:
        load({**BASE_ENV, "METRICS_ADDRESS": "[::1]:4002"}, tmp_path)
    assert "also used by API_PORT_PAPER" in problems_of(e)["METRICS_ADDRESS"]
    assert load({**BASE_ENV, "METRICS_ADDRESS": ""}, tmp_path).metrics_address == ""
    s = load({**BASE_ENV, "METRICS_ADDRESS": "[::]:9200"}, tmp_path)
    assert s.metrics_address == "[::]:9200"


def test_ssh_tunnel_needs_a_user_at_host_and_a_vnc_server_for_the_vnc_forward(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as e:
        load({**BASE_ENV, "SSH_TUNNEL": "both", "SSH_VNC_PORT": "5901"}, tmp_path)
    found = problems_of(e)
    assert "required when SSH_TUNNEL is set" in found["SSH_USER_TUNNEL"]
    assert "VNC_SERVER_PASSWORD" in found["SSH_VNC_PORT"]
    with pytest.raises(ConfigError) as e:
        load({**BASE_ENV, "SSH_TUNNEL": "yes", "SSH_USER_TUNNEL": "bastion"}, tmp_path)
    assert "user@host" in problems_of(e)["SSH_USER_TUNNEL"]


def test_ssh_remote_port_is_the_bastion_port_of_the_first_gateway(tmp_path: Path) -> None:
    env = {**DUAL_ENV, "SSH_TUNNEL": "both", "SSH_USER_TUNNEL": "t@b", "SSH_REMOTE_PORT": "14001"}
    live, paper = load(env, tmp_path).gateways
    assert (live.ssh_remote_port, paper.ssh_remote_port) == (14001, 4002)
    with pytest.raises(ConfigError) as e:
        load({**env, "SSH_REMOTE_PORT": "4002"}, tmp_path)
    assert "distinct remote ports" in problems_of(e)["SSH_REMOTE_PORT"]


def test_probe_client_id_must_differ_from_the_master_client_id(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load({**BASE_ENV, "TWS_MASTER_CLIENT_ID": "999"}, tmp_path)
    assert "equals TWS_MASTER_CLIENT_ID" in problems_of(e)["PROBE_CLIENT_ID"]


def test_value_and_file_both_set_is_an_error_without_showing_the_secret(tmp_path: Path) -> None:
    pw_file = tmp_path / "pw"
    pw_file.write_text("secret-in-file")
    env = {**BASE_ENV, "TWS_PASSWORD": "plain-secret", "TWS_PASSWORD_FILE": str(pw_file)}
    with pytest.raises(ConfigError) as e:
        load(env, tmp_path)
    assert "only one of TWS_PASSWORD and TWS_PASSWORD_FILE" in problems_of(e)["TWS_PASSWORD_FILE"]
    assert "plain-secret" not in str(e.value) and "secret-in-file" not in str(e.value)


def test_missing_or_unreadable_file_is_an_error(tmp_path: Path) -> None:
    env = {**BASE_ENV, "TWS_PASSWORD": "", "VNC_SERVER_PASSWORD_FILE": str(tmp_path)}
    env["TWS_PASSWORD_FILE"] = str(tmp_path / "missing")
    with pytest.raises(ConfigError) as e:
        load(env, tmp_path)
    found = problems_of(e)
    assert "file not found" in found["TWS_PASSWORD_FILE"]
    assert str(tmp_path / "missing") in found["TWS_PASSWORD_FILE"]
    assert "not a regular file" in found["VNC_SERVER_PASSWORD_FILE"]


def test_a_password_typed_into_a_file_variable_is_not_echoed(tmp_path: Path) -> None:
    env = {**BASE_ENV, "TWS_PASSWORD": "", "TWS_PASSWORD_FILE": "hunter2"}
    with pytest.raises(ConfigError) as e:
        load(env, tmp_path)
    assert "hunter2" not in str(e.value)
    assert "<redacted>" in problems_of(e)["TWS_PASSWORD_FILE"]


def test_file_that_is_not_utf8_or_too_large_is_reported(tmp_path: Path) -> None:
    binary, large = tmp_path / "bin", tmp_path / "large"
    binary.write_bytes(b"\xff\xfe")
    large.write_bytes(b"x" * 70000)
    env = {**BASE_ENV, "TWS_PASSWORD": "", "TWS_PASSWORD_FILE": str(binary)}
    env["VNC_SERVER_PASSWORD_FILE"] = str(large)
    with pytest.raises(ConfigError) as e:
        load(env, tmp_path)
    found = problems_of(e)
    assert "not valid UTF-8" in found["TWS_PASSWORD_FILE"]
    assert "larger than 65536 bytes" in found["VNC_SERVER_PASSWORD_FILE"]


def test_gateway_version_defaults_to_the_only_installed_one(tmp_path: Path) -> None:
    tws = tmp_path / "tws"
    (tws / "ibgateway" / "10.30.1t").mkdir(parents=True)
    env = {k: v for k, v in BASE_ENV.items() if k != "IB_GATEWAY_VERSION"}
    env["TWS_PATH"] = str(tws)
    assert load(env, tmp_path).gateway_version == "10.30.1t"
    (tws / "ibgateway" / "10.37.1o").mkdir()
    with pytest.raises(ConfigError) as e:
        load(env, tmp_path)
    assert "10.30.1t, 10.37.1o; pick one" in problems_of(e)["IB_GATEWAY_VERSION"]
    (tws / "ibgateway" / "current").symlink_to("10.37.1o")  # as install-gateway leaves it
    assert load(env, tmp_path).gateway_version == "current"


def test_bad_instance_name_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load(BASE_ENV, tmp_path, instance="../etc")
    assert "a letter followed by" in str(e.value)


def test_instance_conffile_is_named_after_the_instance(tmp_path: Path) -> None:
    s = load(BASE_ENV, tmp_path, instance="live1", conf="TRADING_MODE=live\n")
    assert s.trading_mode is TradingMode.LIVE and s.instance == "live1"


def test_hook_directories_are_relative_to_the_state_directory(tmp_path: Path) -> None:
    s = load({**BASE_ENV, "START_SCRIPTS": "hooks/start/", "X_SCRIPTS": "/srv/x"}, tmp_path)
    assert s.start_scripts == "/var/lib/ibgwd/default/hooks/start"
    assert s.x_scripts == "/srv/x" and s.ibc_scripts == ""


def test_tunnel_settings_are_parsed(tmp_path: Path) -> None:
    env = {
        **BASE_ENV,
        "SSH_TUNNEL": "BOTH",
        "SSH_USER_TUNNEL": "tunnel@bastion.example.org",
        "SSH_PASSPHRASE": "pp",
        "SSH_OPTIONS": "-p 2222",
    }
    s = load(env, tmp_path)
    assert s.ssh.tunnel is SshTunnel.BOTH and s.relay_enabled and s.tunnel_enabled
    assert s.ssh.passphrase is not None and s.ssh.passphrase.reveal() == "pp"
    assert s.ssh.options == "-p 2222"


def test_conffile_with_a_password_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "TWS_PASSWORD"}
    conffile = tmp_path / "etc" / "ibgwd.conf"
    conffile.parent.mkdir()
    conffile.write_text("TWS_PASSWORD=in-conf\n")
    conffile.chmod(0o600)
    load(env, tmp_path)
    assert "readable by others" not in caplog.text
    conffile.chmod(0o640)
    load(env, tmp_path)
    assert "readable by others" in caplog.text and "in-conf" not in caplog.text
