"""A reboot within the week costs no 2FA: at a system shutdown ibgwd sends IBC PAUSE (the
Gateway shuts down keeping its restart token) and the next boot, on the same state directory,
resumes with the token. Real systemd powers the box off (SIGRTMIN+4) and a new box boots on the
same /var/lib/ibgwd (a host directory bound into both)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stack
from harness import Box
from test_survival import EVENTS, UNIT, full_logins

pytestmark = pytest.mark.system

# ibgwd waits for the PAUSE to take effect (the next minute) plus the Gateway's shutdown; the
# box gets that and more before it is killed.
POWEROFF_TIMEOUT_S = 240.0


@pytest.fixture
def state_dir(as_root: None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ibgwd-reboot-state-", dir="/var/tmp"))
    path.chmod(0o755)  # as /var/lib/ibgwd: the gateway user traverses it
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def boot(box_factory: object, state_dir: Path, settings: dict[str, str]) -> Box:
    box = box_factory(binds=[(str(state_dir), "/var/lib/ibgwd", False)])  # type: ignore[operator]
    assert isinstance(box, Box)
    stack.install(box, settings)
    return box


def test_reboot_pauses_the_gateway_and_the_next_boot_logs_in_with_its_token(
    box_factory: object, state_dir: Path
) -> None:
    # The box is a container to systemd (/run/systemd/container), where the default is `stop`.
    settings = stack.base_settings() | {"SHUTDOWN_ACTION": "pause"}
    first = boot(box_factory, state_dir, settings)
    stack.start(first)
    logins = full_logins(first)
    assert logins == 1

    down = time.monotonic()
    first.stop(stop_timeout_s=POWEROFF_TIMEOUT_S)  # systemd's poweroff, not a kill
    took_down = time.monotonic() - down
    events = (state_dir / "default/settings/sim-events.log").read_text(encoding="utf-8")
    assert "event=command command=PAUSE" in events
    assert "event=command command=STOP" not in events
    assert "event=autorestart_written" in events

    second = boot(box_factory, state_dir, settings)
    up = time.monotonic()
    stack.start(second)
    took_up = time.monotonic() - up
    assert second.path(EVENTS).read_text(encoding="utf-8").count("event=autorestart_consumed") == 1
    print(
        f"reboot: poweroff with PAUSE {took_down:.1f} s, ready after boot {took_up:.1f} s, "
        f"full logins +{full_logins(second) - logins}"
    )
    assert full_logins(second) == logins  # the token login is no 2FA
    assert stack.show(second, UNIT, "StatusText").startswith("ready")


def test_in_a_container_the_default_shutdown_action_is_stop(
    box_factory: object, state_dir: Path
) -> None:
    first = boot(box_factory, state_dir, stack.base_settings())
    stack.start(first)
    assert first.path("/run/systemd/container").exists()
    first.stop(stop_timeout_s=POWEROFF_TIMEOUT_S)
    events = (state_dir / "default/settings/sim-events.log").read_text(encoding="utf-8")
    assert "event=command command=STOP" in events
    assert "event=command command=PAUSE" not in events


def test_shutdown_action_stop_stops_the_gateway_at_poweroff(
    box_factory: object, state_dir: Path
) -> None:
    first = boot(box_factory, state_dir, stack.base_settings() | {"SHUTDOWN_ACTION": "stop"})
    stack.start(first)
    first.stop(stop_timeout_s=POWEROFF_TIMEOUT_S)
    events = (state_dir / "default/settings/sim-events.log").read_text(encoding="utf-8")
    assert "event=command command=STOP" in events
    assert "event=command command=PAUSE" not in events
