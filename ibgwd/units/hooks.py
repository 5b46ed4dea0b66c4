"""START_SCRIPTS / X_SCRIPTS / IBC_SCRIPTS: the old image's hook directories, run as oneshot units.

As in the old image every ``*.sh`` of the directory runs with bash, in glob order, one after the
other; a failing script is reported and the next one still runs. Unlike the old image they run
as the unprivileged gateway user, in their own unit, with their output in the journal.
"""

from __future__ import annotations

import enum

from ibgwd.config.model import Settings
from ibgwd.names import InstanceNames
from ibgwd.units.spec import Paths, UnitSpec

HOOK_TIMEOUT_S = 300.0

RUNNER = (
    'for f in "$0"/*.sh; do [ -e "$f" ] || continue; echo "running $f"; '
    'bash "$f" || echo "hook $f failed with status $?" >&2; done'
)


class Stage(enum.Enum):
    START = "start"  # before the display starts
    X = "x"  # once the X display accepts connections
    IBC = "ibc"  # once IBC and the Gateway were launched

    def directory(self, settings: Settings) -> str:
        return {
            Stage.START: settings.start_scripts,
            Stage.X: settings.x_scripts,
            Stage.IBC: settings.ibc_scripts,
        }[self]


def hook_spec(
    settings: Settings, names: InstanceNames, paths: Paths, stage: Stage
) -> UnitSpec | None:
    """The oneshot unit running the stage's scripts, or None when no directory is set."""
    directory = stage.directory(settings)
    if not directory:
        return None
    return UnitSpec(
        component=f"hook-{stage.value}",
        name=names.unit("hook", stage.value),
        description=f"ibgwd {names.instance}: {stage.value.upper()}_SCRIPTS hooks",
        exec_start=("/bin/bash", "-c", RUNNER, directory),
        user=names.gateway_user,
        environment=(
            f"DISPLAY=:{settings.display}",
            f"XAUTHORITY={paths.xauthority(settings.display)}",
            f"HOME={paths.home}",
            f"TZ={settings.time_zone}",
            f"TRADING_MODE={settings.trading_mode.value}",
        ),
        working_directory=str(paths.home),
        service_type="oneshot",
        timeout_start_s=HOOK_TIMEOUT_S,
        read_write_paths=(str(paths.home),),
    )
