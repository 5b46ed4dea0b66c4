"""ibcstart.sh's command line, pre-flight checks and exit codes 0-8, as IBC documents them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ibgwd_sim.install import SimInstall


def _run(sim: SimInstall, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(
        [str(sim.ibcstart), *args], capture_output=True, text=True, timeout=30, env=env
    )
    return proc.returncode, proc.stdout, proc.stderr


def _good_args(sim: SimInstall, settings: Path, ini: Path) -> list[str]:
    return [
        sim.gateway_version,
        "-g",
        f"--tws-path={sim.tws_path}",
        f"--tws-settings-path={settings}",
        f"--ibc-path={sim.ibc_path}",
        f"--ibc-ini={ini}",
        "--on2fatimeout=exit",
    ]


@pytest.fixture
def ini(tmp_path: Path) -> Path:
    path = tmp_path / "config.ini"
    path.write_text("TradingMode=paper\n")
    return path


@pytest.mark.parametrize("args", [(), ("",), ("-h",), ("-?",), ("--HELP",)])
def test_usage_exits_0(sim: SimInstall, args: tuple[str, ...]) -> None:
    code, out, err = _run(sim, *args)
    assert (code, err) == (0, "")
    assert "Usage:" in out


def test_missing_version_exits_2(sim: SimInstall) -> None:
    code, out, err = _run(sim, "-g", "--mode=paper")
    assert (code, err) == (2, "")
    assert "version" in out


@pytest.mark.parametrize("bad", ["--frobnicate=1", "-x", "second-version"])
def test_unknown_argument_exits_3(sim: SimInstall, bad: str) -> None:
    code, out, err = _run(sim, "1030", "-g", bad)
    assert (code, err) == (3, "")
    assert bad in out


def test_options_are_case_insensitive_and_settings_path_slash_stripped(
    sim: SimInstall, settings_path: Path, ini: Path
) -> None:
    args = [a.replace("--tws-path", "--TWS-PATH") for a in _good_args(sim, settings_path, ini)]
    args = [a + "/" if a.startswith("--tws-settings-path") else a for a in args]
    args = ["-G" if a == "-g" else a for a in args]
    # DISPLAY unset: gets past every pre-flight check, then fails at the Gateway entry point
    env = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
    code, out, err = _run(sim, *args, env=env)
    assert f"Settings path: {settings_path}\n" in out
    assert "Exiting after error with exit code=1107" in out
    assert (code, err) == (83, "")


def test_missing_settings_path_exits_5(sim: SimInstall, tmp_path: Path, ini: Path) -> None:
    code, out, _ = _run(sim, *_good_args(sim, tmp_path / "nope", ini))
    assert code == 5
    assert "does not exist" in out


def test_missing_gateway_version_exits_4(sim: SimInstall, settings_path: Path, ini: Path) -> None:
    args = _good_args(sim, settings_path, ini)
    args[0] = "10.99.9z"
    assert _run(sim, *args)[0] == 4


def test_missing_ibc_path_exits_5(
    sim: SimInstall, settings_path: Path, ini: Path, tmp_path: Path
) -> None:
    args = [
        f"--ibc-path={tmp_path / 'noibc'}" if a.startswith("--ibc-path") else a
        for a in _good_args(sim, settings_path, ini)
    ]
    code, out, _ = _run(sim, *args)
    assert code == 5
    assert "IBC path" in out


def test_missing_ini_exits_6(sim: SimInstall, settings_path: Path, tmp_path: Path) -> None:
    assert _run(sim, *_good_args(sim, settings_path, tmp_path / "none.ini"))[0] == 6


def test_missing_vmoptions_exits_7(sim: SimInstall, settings_path: Path, ini: Path) -> None:
    (sim.program_path / "ibgateway.vmoptions").unlink()
    assert _run(sim, *_good_args(sim, settings_path, ini))[0] == 7


def test_missing_java_path_exits_1(
    sim: SimInstall, settings_path: Path, ini: Path, tmp_path: Path
) -> None:
    args = [*_good_args(sim, settings_path, ini), f"--java-path={tmp_path}"]
    assert _run(sim, *args)[0] == 1


def test_no_java_anywhere_exits_1(sim: SimInstall, settings_path: Path, ini: Path) -> None:
    (sim.program_path / ".install4j" / "inst_jre.cfg").unlink()
    env = {"PATH": "/nonexistent", "HOME": "/root"}
    assert shutil.which("java", path=env["PATH"]) is None
    assert _run(sim, *_good_args(sim, settings_path, ini), env=env)[0] == 1
