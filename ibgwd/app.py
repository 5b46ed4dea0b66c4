"""Composition root: builds every object of the daemon, runs the GLib main loop, maps exit codes."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gi.repository import GLib

from ibgwd import notify
from ibgwd.config.load import load_settings
from ibgwd.config.model import Settings
from ibgwd.errors import EX_CONFIG, EX_OK, EX_SOFTWARE, EX_UNAVAILABLE, ConfigError, IbgwdError
from ibgwd.isolation.users import ensure_user
from ibgwd.log import setup_logging
from ibgwd.names import InstanceNames
from ibgwd.supervisor.files import RuntimeFiles
from ibgwd.supervisor.plan import StopKind, stop_kind
from ibgwd.supervisor.supervisor import Supervisor
from ibgwd.units.spec import Paths
from ibgwd.units.systemd import UnitManager

log = logging.getLogger(__name__)


def _read_version(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip().splitlines()[0]
    except (OSError, IndexError):
        return ""


DIGEST_KEY_FILE = "unit-digest.key"
CONTAINER_MARKER = Path("/run/systemd/container")


def digest_key(path: Path) -> bytes:
    """The key of the spec digests in the units' Descriptions (root only, made once)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key


def shutdown_action(setting: str, container_marker: Path = CONTAINER_MARKER) -> str:
    """SHUTDOWN_ACTION, or its default: `pause` on a host, `stop` in a container (systemd
    writes the marker there), whose runtime rarely grants a PAUSE the time it needs."""
    if setting:
        return setting
    return "stop" if container_marker.exists() else "pause"


def _stop_kind(units: UnitManager, service: str, shutdown_action: str, signum: int) -> StopKind:
    """SIGTERM from systemd: a restart job keeps the children, a stop job or a shutdown ends
    them (docs/decisions.md). SIGINT, or a run outside systemd: stop."""
    if signum != signal.SIGTERM or not os.environ.get("INVOCATION_ID"):
        return stop_kind(None, "", shutdown_action)
    return stop_kind(units.job_type(service), units.system_state(), shutdown_action)


def main(instance: str, config_dir: Path) -> int:
    """Run the daemon for one instance; returns the exit status."""
    setup_logging()
    names = InstanceNames(instance)
    notifier = notify.SystemdNotifier()
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")

    def load() -> Settings:
        return load_settings(
            instance,
            config_dir=config_dir,
            environ=os.environ,
            credentials_dir=Path(credentials) if credentials else None,
        )

    try:
        settings = load()
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("event=bad_setting %s", problem)
        notifier.send(notify.status(f"invalid configuration: {exc.problems[0]}"))
        return EX_CONFIG
    try:
        # One user per instance (ibgwd/isolation/users.py): created on the first start.
        uid, gid = ensure_user(names)
    except IbgwdError as exc:
        log.error("event=missing_user user=%s error=%s", names.gateway_user, exc)
        return EX_CONFIG
    try:
        return _run(names, settings, load, notifier, uid, gid)
    except IbgwdError as exc:
        log.error("event=fatal error=%s", exc)
        return exc.exit_code


def _run(
    names: InstanceNames,
    settings: Settings,
    load: Callable[[], Settings],
    notifier: notify.SystemdNotifier,
    uid: int,
    gid: int,
) -> int:
    # Imported here: they connect to the system bus and start threads, which `check-config`
    # and `render` never need.
    from dasbus.connection import SystemMessageBus

    from ibgwd.dbus.auth import UnixGroupAuthorizer, bus_uid_lookup
    from ibgwd.dbus.diagnostics import attach_diagnostics
    from ibgwd.dbus.server import publish
    from ibgwd.metrics import (
        Health,
        MetricsServer,
        ProbeRecorder,
        build_registry,
        glib_loop_probe,
    )
    from ibgwd.notifications.service import attach as attach_notifications
    from ibgwd.units.systemd import SystemdClient

    runtime = Path(os.environ.get("RUNTIME_DIRECTORY", names.runtime_dir).split(":")[0])
    state = Path(os.environ.get("STATE_DIRECTORY", names.state_dir).split(":")[0])
    paths = Paths(runtime_dir=runtime, state_dir=state)
    bus = SystemMessageBus()
    units = SystemdClient(bus)
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
    recorder = ProbeRecorder()
    supervisor = Supervisor(
        names=names,
        settings=settings,
        paths=paths,
        load_settings=load,
        files=RuntimeFiles(paths, uid, gid),
        units=units,
        notifier=notifier,
        executor=executor,
        observer=recorder,
        versions=(
            settings.gateway_version,
            _read_version(Path(settings.ibc_path) / "version"),
        ),
        digest_key=digest_key(state / DIGEST_KEY_FILE),
    )
    metrics = MetricsServer.from_setting(
        build_registry(supervisor.status, recorder),
        settings.metrics_address,
        Health(supervisor.status, glib_loop_probe()),
    )
    if metrics:
        metrics.start()
        log.info("event=metrics_listening url=%s", metrics.url)
    notifications = attach_notifications(supervisor, settings, names, paths, units, load)
    attach_diagnostics(
        bus, settings, names, paths, units, uid, gid, notifications, supervisor.status
    )
    publish(bus, supervisor, UnixGroupAuthorizer(bus_uid_lookup(bus)), names.instance)
    loop = GLib.MainLoop()
    exit_code = EX_OK

    def on_stop(signum: int) -> bool:
        try:
            action = shutdown_action(supervisor.settings.shutdown_action)
            kind = _stop_kind(units, names.service, action, signum)
        except Exception:  # systemd did not answer: the conventional meaning of SIGTERM
            log.exception("event=stop_kind_unknown action=stop")
            kind = StopKind.STOP
        log.info("event=stop_requested signal=%d kind=%s", signum, kind.value)
        try:
            supervisor.stop(kind, done=loop.quit)
        except Exception:  # the children are ordered before ibgwd: systemd stops what is left
            log.exception("event=stop_failed kind=%s", kind.value)
            loop.quit()
        return False

    def on_reload() -> bool:
        try:
            supervisor.reload()
        except ConfigError as exc:
            log.error("event=reload_refused problems=%s", exc)
        except Exception:  # a failed reload must not disarm the handler (then SIGHUP kills)
            log.exception("event=reload_failed")
        return True

    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, on_stop, signal.SIGTERM)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, on_stop, signal.SIGINT)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGHUP, on_reload)
    try:
        supervisor.start()
        loop.run()
    except IbgwdError as exc:
        # The children keep running: the restarted ibgwd adopts them (Restart=on-failure).
        log.error("event=fatal error=%s", exc)
        exit_code = exc.exit_code if exc.exit_code != EX_CONFIG else EX_UNAVAILABLE
        supervisor.stop(StopKind.DETACH)
    except Exception:
        log.exception("event=crash")
        exit_code = EX_SOFTWARE
    finally:
        if metrics:
            metrics.stop()
        notifications.close()
        executor.shutdown(wait=False, cancel_futures=True)
        bus.disconnect()
    sys.stdout.flush()
    return exit_code
