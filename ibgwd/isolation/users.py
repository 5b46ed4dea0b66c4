"""One unprivileged user per instance: `ibgateway` for the default instance (shipped as a
sysusers.d entry), `ibgw-<instance>` for the others, created on first start."""

from __future__ import annotations

import logging
import pwd
import subprocess
from collections.abc import Callable

from ibgwd.errors import IbgwdError
from ibgwd.names import InstanceNames

log = logging.getLogger(__name__)

SYSTEMD_RUN = "/usr/bin/systemd-run"
SYSUSERS = "/usr/bin/systemd-sysusers"
TIMEOUT_S = 60.0


def sysusers_line(names: InstanceNames) -> str:
    """The sysusers.d(5) line of the instance's user (its own group, home in its state)."""
    return (
        f'u {names.gateway_user} - "IB Gateway (ibgwd instance {names.instance})" '
        f"{names.state_dir}/home"
    )


def create_command(names: InstanceNames) -> list[str]:
    """ibgwd itself cannot write /etc (ProtectSystem=full): systemd-sysusers runs in a
    short-lived unit of its own, the standard tool doing the standard job."""
    return [
        SYSTEMD_RUN,
        "--wait",
        "--quiet",
        "--collect",
        "--service-type=oneshot",
        f"--unit=ibgwd-{names.instance}-sysusers",
        f"--description=ibgwd {names.instance}: create the user {names.gateway_user}",
        "--",
        SYSUSERS,
        "--inline",
        sysusers_line(names),
    ]


def ensure_user(
    names: InstanceNames,
    *,
    lookup: Callable[[str], pwd.struct_passwd] = pwd.getpwnam,
    run: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None,
) -> tuple[int, int]:
    """(uid, gid) of the instance's gateway user, created first if missing (not the default
    instance's `ibgateway`, which the package creates)."""
    user = names.gateway_user
    try:
        entry = lookup(user)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        if names.is_default:
            raise IbgwdError(
                f"the user {user!r} does not exist (create it with systemd-sysusers)"
            ) from None
    runner = run or _run
    log.info("event=create_user user=%s instance=%s", user, names.instance)
    result = runner(create_command(names))
    try:
        entry = lookup(user)
    except KeyError:
        raise IbgwdError(
            f"could not create the user {user!r} for instance {names.instance}: "
            f"{(result.stderr or result.stdout).strip() or f'exit status {result.returncode}'}"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
