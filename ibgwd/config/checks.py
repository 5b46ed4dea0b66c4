"""Host checks for `ibgwd check-config`: do the paths the settings name hold what ibgwd will run?

Only check-config runs these (the daemon meets the same facts when it starts the units); each
problem names the setting, the value and what is expected, like every other config error.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ibgwd.config import spec
from ibgwd.config.model import Settings
from ibgwd.config.sources import REDACTED
from ibgwd.errors import Problem


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def check_paths(settings: Settings) -> list[Problem]:
    problems: list[Problem] = []
    if not settings.custom_config or settings.gateways:
        launcher = Path(settings.ibc_path) / "scripts" / "ibcstart.sh"
        if not _executable(launcher):
            problems.append(
                Problem(
                    spec.IBC_PATH.name,
                    settings.ibc_path,
                    "a directory holding IBC (scripts/ibcstart.sh, executable)",
                    f"no executable {launcher} (install IBC: ibgwd install-gateway --help)",
                )
            )
    if settings.gateway_version:
        install = Path(settings.tws_path) / "ibgateway" / settings.gateway_version
        if not install.is_dir():
            problems.append(
                Problem(
                    spec.IB_GATEWAY_VERSION.name,
                    settings.gateway_version,
                    f"a version installed under {Path(settings.tws_path) / 'ibgateway'}",
                    f"no directory {install} (see ibgwd install-gateway --list)",
                )
            )
    if settings.tunnel_enabled:
        key_dir = Path(settings.ssh.key_dir)
        try:
            keys = [p.name for p in key_dir.iterdir() if p.name.startswith("id_")]
        except OSError as exc:
            keys, why = [], f"cannot list {key_dir}: {exc.strerror or exc}"
        else:
            why = f"no id_* private key in {key_dir}"
        if not [k for k in keys if not k.endswith(".pub")]:
            problems.append(
                Problem(
                    spec.SSH_KEY_DIR.name,
                    str(key_dir),
                    "a directory holding the tunnel's private key (id_ed25519, id_rsa, ...)",
                    why,
                )
            )
    if settings.vnc_enabled and not shutil.which("x11vnc"):
        problems.append(
            Problem(
                spec.VNC_SERVER_PASSWORD.name,
                REDACTED,
                "empty (VNC off), or x11vnc installed",
                "VNC is on but x11vnc is not installed (apt install x11vnc)",
            )
        )
    return problems
