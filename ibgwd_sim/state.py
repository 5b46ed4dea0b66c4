"""The Gateway's own stored settings: ``<settings>/<user dir>/ibg.xml``.

The real Gateway keeps its configuration (API settings, Lock and Exit) in an XML file in a
per-user directory of the settings path and writes it when it shuts down properly; a fresh
one has ``readOnlyApi="true" allowOnlyLocalhost="true"`` (ibg.xml quoted in
ib-controller/ib-controller#65) and restarts itself daily at 11:45 PM (Lock and Exit default,
QuantConnect/Lean.Brokerages.InteractiveBrokers#242). The simulation stores only what it
models, in the same place, so it survives restarts as the real settings do.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

FILE_NAME = "ibg.xml"
DEFAULT_LOCK_EXIT_TIME = "11:45 PM"


@dataclass(frozen=True)
class GatewayState:
    read_only_api: bool = True
    allow_only_localhost: bool = True
    lock_exit_action: str = "restart"  # "restart" (Auto restart) | "logoff" (Auto log off)
    lock_exit_time: str = DEFAULT_LOCK_EXIT_TIME  # hh:mm AM|PM
    # The restart occurrence ("YYYY-mm-dd HH:MM" on the simulated clock) already carried out,
    # so a relaunch within that minute does not restart again.
    last_restart: str = ""

    def with_(self, **changes: object) -> GatewayState:
        return replace(self, **changes)  # type: ignore[arg-type]


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.lower() == "true"


def load(user_dir: Path) -> GatewayState:
    try:
        root = ET.parse(user_dir / FILE_NAME).getroot()
    except (OSError, ET.ParseError):
        return GatewayState()
    api = root.find("ApiSettings")
    lock = root.find("LockAndExit")
    default = GatewayState()
    return GatewayState(
        read_only_api=_flag(api.get("readOnlyApi") if api is not None else None, True),
        allow_only_localhost=_flag(
            api.get("allowOnlyLocalhost") if api is not None else None, True
        ),
        lock_exit_action=(lock.get("action") if lock is not None else None)
        or default.lock_exit_action,
        lock_exit_time=(lock.get("time") if lock is not None else None) or default.lock_exit_time,
        last_restart=(lock.get("lastRestart") if lock is not None else None) or "",
    )


def save(user_dir: Path, state: GatewayState) -> None:
    root = ET.Element("IBGateway")
    ET.SubElement(
        root,
        "ApiSettings",
        varName="api",
        readOnlyApi=str(state.read_only_api).lower(),
        allowOnlyLocalhost=str(state.allow_only_localhost).lower(),
    )
    ET.SubElement(
        root,
        "LockAndExit",
        action=state.lock_exit_action,
        time=state.lock_exit_time,
        lastRestart=state.last_restart,
    )
    user_dir.mkdir(exist_ok=True)
    ET.ElementTree(root).write(user_dir / FILE_NAME, encoding="utf-8", xml_declaration=True)
