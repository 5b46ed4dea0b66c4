"""Secrets from start to READY: the scanner sees every process, escaped forms and files (issue 20).

`stack.SecretWatch` samples argv and environment of every process in the box from before
`systemctl start` until READY; `stack.assert_no_secret_leaks` then checks processes, unit
properties, the journal (all fields), /metrics and every file an unprivileged user can read
under /etc, /run, /var, /tmp, /dev/shm and the gateway user's home, for the raw value and the
forms java.util.Properties (IBC's config.ini) gives it.
"""

from __future__ import annotations

import subprocess
import time

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

VNC_PASSWORD = "Vnc-s3cret-pw"  # test credential
CREDSTORE = "/etc/credstore/ibgwd.tws_password"
DROPIN = "/etc/systemd/system/ibgwd.service.d/credential.conf"
SIM_EVENTS = "/var/lib/ibgwd/default/settings/sim-events.log"


def hooks(box: Box) -> dict[str, str]:
    """Short-lived children during startup: hook scripts at each of the three points."""
    state = "/var/lib/ibgwd/default/hooks"
    for stage in ("start", "x", "ibc"):
        d = box.path(f"{state}/{stage}")
        d.mkdir(parents=True)
        (d / "10-run.sh").write_text("sleep 0.2\n")
    box.run("chmod", "-R", "a+rX", state)
    return {"START_SCRIPTS": "hooks/start", "X_SCRIPTS": "hooks/x", "IBC_SCRIPTS": "hooks/ibc"}


def test_no_secret_leaks_anywhere_from_start_to_ready(box: Box) -> None:
    password = stack.base_settings()["TWS_PASSWORD"]
    settings = stack.base_settings() | hooks(box) | {"VNC_SERVER_PASSWORD": VNC_PASSWORD}
    stack.install(box, settings)
    watch = stack.SecretWatch(box, [password, VNC_PASSWORD])
    stack.start(box)
    assert stack.show(box, "ibgwd.service", "StatusText").startswith("ready")
    stack.assert_no_secret_leaks(box, [password, VNC_PASSWORD], watch)


def test_the_scanner_finds_escaped_copies_in_files_processes_and_short_lived_children(
    box: Box,
) -> None:
    """The scanner can fail: each planted leak, alone, is reported."""
    secret = stack.base_settings()["TWS_PASSWORD"]
    escaped = max(stack.secret_forms(secret), key=len)  # spaces and specials escaped, \\uXXXX
    stack.install(box, stack.base_settings())
    stack.start(box)
    stack.assert_no_secret_leaks(box, [secret])  # clean before planting

    leak = box.path("/var/tmp/copy.ini")
    leak.write_bytes(b"IbPassword=" + escaped + b"\n")
    leak.chmod(0o644)
    with pytest.raises(AssertionError, match="world-readable files"):
        stack.assert_no_secret_leaks(box, [secret])
    leak.chmod(0o600)  # root's own file, unreadable by others: not a leak
    stack.assert_no_secret_leaks(box, [secret])
    leak.unlink()

    env = stack.secret_forms(secret)[0].decode("latin-1")
    cmd = box.command("sleep", "60")
    sleeper = subprocess.Popen(cmd, env=box.environment(env={"LEAKED": env}))
    try:
        time.sleep(0.5)
        with pytest.raises(AssertionError, match="processes now"):
            stack.assert_no_secret_leaks(box, [secret])
    finally:
        sleeper.kill()
        sleeper.wait()

    watch = stack.SecretWatch(box, [secret])
    box.run("sh", "-c", "sleep 0.3", env={"LEAKED": env})  # gone before the final snapshot
    with pytest.raises(AssertionError, match="processes sampled since the start"):
        stack.assert_no_secret_leaks(box, [secret], watch)


def credential_only(box: Box, credential: str) -> None:
    """The README's way: the password in a root-only credential file, LoadCredential= in a
    drop-in, nothing in the conffile. The simulated gateway accepts only the test password."""
    password = stack.base_settings()["TWS_PASSWORD"]
    settings = {
        k: v
        for k, v in stack.base_settings().items()
        if k not in ("TWS_PASSWORD", "TWS_USERID_PAPER", "TWS_PASSWORD_PAPER")
    }
    stack.install(box, settings, sim={"AcceptUser": stack.DEMO_USER, "AcceptPassword": password})
    cred = box.path(CREDSTORE)
    cred.parent.mkdir(mode=0o700, parents=True)
    cred.touch(mode=0o600)
    cred.write_text(credential + "\n", encoding="utf-8")
    dropin = box.path(DROPIN)
    dropin.parent.mkdir(parents=True)
    dropin.write_text(f"[Service]\nLoadCredential=tws_password:{CREDSTORE}\n")
    box.run("systemctl", "daemon-reload")
    assert "PASSWORD" not in box.path("/etc/ibgwd/ibgwd.conf").read_text(encoding="utf-8")


def sim_events(box: Box) -> str:
    path = box.path(SIM_EVENTS)
    return path.read_text() if path.exists() else ""


def test_password_only_in_load_credential_reaches_ibc_and_ready(box: Box) -> None:
    password = stack.base_settings()["TWS_PASSWORD"]
    credential_only(box, password)
    watch = stack.SecretWatch(box, [password])
    stack.start(box)
    assert stack.show(box, "ibgwd.service", "StatusText").startswith("ready")
    assert stack.ib_async_client(box, 4004).ok
    assert "login_failed" not in sim_events(box)
    stack.assert_no_secret_leaks(box, [password], watch)


def test_a_wrong_password_in_the_credential_is_refused_by_the_simulated_gateway(
    box: Box,
) -> None:
    """The control for the test above: the simulated gateway really checks the password."""
    password = stack.base_settings()["TWS_PASSWORD"]
    credential_only(box, password + "x")
    box.run("systemctl", "start", "--no-block", "ibgwd.service")
    stack.wait_for(lambda: "login_failed" in sim_events(box), 60, "the login to fail")
    assert not stack.show(box, "ibgwd.service", "StatusText").startswith("ready")
