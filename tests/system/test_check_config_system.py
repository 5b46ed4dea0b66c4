"""check-config with the recommended secret setup: the password only in a systemd credential."""

from __future__ import annotations

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

UNIT = "ibgwd.service"
STORE = "/etc/credstore"


def test_credentials_the_unit_loads_pass_under_systemd_and_from_a_shell(box: Box) -> None:
    settings = stack.base_settings()
    password = settings.pop("TWS_PASSWORD_PAPER")
    settings.pop("TWS_PASSWORD")
    stack.install(box, settings)
    box.path(STORE).mkdir(mode=0o700, exist_ok=True)
    box.path(f"{STORE}/tws_password_paper").write_text(password + "\n", encoding="utf-8")
    box.path(f"{STORE}/tws_password_paper").chmod(0o600)
    dropin = box.path(f"/etc/systemd/system/{UNIT}.d/credentials.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(
        f"[Service]\nLoadCredential=tws_password_paper:{STORE}/tws_password_paper\n",
        encoding="utf-8",
    )
    box.run("systemctl", "daemon-reload")

    # Not root: the 0600 conffile cannot be read, and that is all it says.
    r = box.run("/usr/bin/ibgwd", "check-config", user="nobody", check=False)
    assert (r.returncode, r.stderr) == (
        77,
        "ibgwd: cannot read /etc/ibgwd/ibgwd.conf: permission denied (run as root)\n",
    )

    # From a shell: the credential is found through the unit, and said so.
    r = box.run("/usr/bin/ibgwd", "check-config", check=False)
    assert r.returncode == 0, r.stderr
    assert (
        "TWS_PASSWORD_PAPER: from credential tws_password_paper "
        f"(LoadCredential= of {UNIT}) (read)" in r.stdout
    )
    assert password not in r.stdout + r.stderr
    shown = box.run("/usr/bin/ibgwd", "check-config", "--show").stdout
    assert "TWS_PASSWORD_PAPER=<redacted>" in shown and "LoadCredential= of" in shown

    # Under systemd, with the unit's own credential: passes too (what ExecStartPre= would see).
    r = box.run(
        "systemd-run", "--pipe", "--wait", "--quiet",
        f"--property=LoadCredential=tws_password_paper:{STORE}/tws_password_paper",
        "/usr/bin/ibgwd", "check-config",
        check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "configuration valid" in r.stdout and "LoadCredential= of" not in r.stdout

    # And the daemon logs in with it.
    stack.start(box)
    assert stack.show(box, UNIT, "StatusText").startswith("ready")

    # Without the drop-in, the shell check names what is missing.
    dropin.unlink()
    box.run("systemctl", "daemon-reload")
    r = box.run("/usr/bin/ibgwd", "check-config", check=False)
    assert r.returncode == 78
    assert "TWS_PASSWORD_PAPER: invalid value ''" in r.stderr


def test_an_encrypted_credential_counts_as_set(box: Box) -> None:
    settings = stack.base_settings()
    password = settings.pop("TWS_PASSWORD_PAPER")
    settings.pop("TWS_PASSWORD")
    stack.install(box, settings)
    box.path(f"{STORE}.encrypted").mkdir(mode=0o700, parents=True, exist_ok=True)
    sealed = f"{STORE}.encrypted/tws_password_paper.cred"
    enc = box.run(
        "systemd-creds", "encrypt", "--with-key=host", "--name=tws_password_paper", "-", sealed,
        input=password, check=False,
    )  # fmt: skip
    if enc.returncode != 0:
        pytest.skip(f"systemd-creds cannot encrypt in this box: {enc.stderr.strip()}")
    dropin = box.path(f"/etc/systemd/system/{UNIT}.d/credentials.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text(
        f"[Service]\nLoadCredentialEncrypted=tws_password_paper:{sealed}\n", encoding="utf-8"
    )
    box.run("systemctl", "daemon-reload")
    r = box.run("/usr/bin/ibgwd", "check-config", check=False)
    assert r.returncode == 0, r.stderr
    assert "(LoadCredentialEncrypted= of ibgwd.service) (encrypted: counted as set)" in r.stdout
    stack.start(box)
    assert stack.show(box, UNIT, "StatusText").startswith("ready")
