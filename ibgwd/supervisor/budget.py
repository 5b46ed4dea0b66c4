"""The recovery budget on disk: one small JSON per instance, written atomically.

ibgwd's own restarts (a crash, the watchdog, an upgrade) must not reset the hourly recovery
budget nor forget a failed login, or a restart loop of ibgwd would become a login storm
against IB. Times are Unix seconds. Nothing here is secret.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_NAME = "recovery-budget.json"
VERSION = 1


def load(path: Path) -> dict[str, dict[str, Any]]:
    """mode -> the budget saved by `health.budget_to_wall`; {} when missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("event=budget_unreadable path=%s error=%s", path, exc)
        return {}
    gateways = data.get("gateways") if isinstance(data, dict) else None
    if not isinstance(gateways, dict):
        return {}
    return {str(k): v for k, v in gateways.items() if isinstance(v, dict)}


def save(path: Path, gateways: dict[str, dict[str, Any]]) -> None:
    """Replace the file atomically (write a temporary file, fsync, rename)."""
    text = json.dumps({"version": VERSION, "gateways": gateways}, sort_keys=True, indent=1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("event=budget_not_saved path=%s error=%s", path, exc)
