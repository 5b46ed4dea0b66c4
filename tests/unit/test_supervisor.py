"""The supervisor's shell against fakes of systemd, probes and IBC, on a real GLib main loop
(no root): adoption, convergence, job sequencing without nested loops, stop kinds, callbacks
that raise."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dasbus.typing import get_native
from gi.repository import GLib
from settings_samples import BASE_ENV, DUAL_ENV, load

from ibgwd import app
from ibgwd.config.model import Settings
from ibgwd.errors import UnitError
from ibgwd.names import InstanceNames
from ibgwd.probes.api import Outcome, ProbeResult
from ibgwd.status import State
from ibgwd.supervisor import plan
from ibgwd.supervisor import supervisor as sup
from ibgwd.supervisor.plan import StopKind
from ibgwd.units.properties import Property
from ibgwd.units.spec import Paths
from ibgwd.units.systemd import UnitInfo

NAMES = InstanceNames("default")
KEY = b"k" * 32
FAST = {"PROBE_INTERVAL": "1", "PROBE_TIMEOUT": "1"}
LIVE = {"TRADING_MODE": "live"}


@dataclass
class FakeUnit:
    name: str
    description: str
    pid: int
    active: str = "active"


@dataclass
class FakeUnits:
    """systemd as the supervisor sees it: jobs end later, on the loop, with JobRemoved."""

    stop_ms: dict[str, int] = field(default_factory=dict)  # unit name fragment -> stop delay
    units: dict[str, FakeUnit] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    max_depth: int = 0
    job_type_now: str = ""
    refuse: set[str] = field(default_factory=set)  # fragments: the next start of these fails
    state_now: str = "running"
    _pids: Iterator[int] = field(default_factory=lambda: itertools.count(100))
    _jobs: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _job_cbs: list[Callable[[str, str], None]] = field(default_factory=list)
    _changed: Callable[[], None] | None = None

    def _enter(self, what: str, name: str) -> None:
        self.calls.append((what, name))
        self.max_depth = max(self.max_depth, GLib.main_depth())

    def _job(self, delay_ms: int, then: Callable[[], None]) -> str:
        job = f"/org/freedesktop/systemd1/job/{next(self._jobs)}"

        def finish() -> bool:
            then()
            for cb in self._job_cbs:
                cb(job, "done")
            if self._changed:
                self._changed()
            return False

        GLib.timeout_add(delay_ms, finish)
        return job

    def start_transient(self, name: str, properties: list[Property]) -> str:
        self._enter("start", name)
        for fragment in [f for f in self.refuse if f in name]:
            self.refuse.discard(fragment)
            raise UnitError(f"systemd refused to start {name}: timeout")
        if name in self.units:
            raise AssertionError(f"{name} started while it runs (UnitExists)")
        desc = next(get_native(v) for k, v in properties if k == "Description")
        self.units[name] = FakeUnit(name, desc, next(self._pids))
        return self._job(5, lambda: None)

    def stop(self, name: str) -> str | None:
        self._enter("stop", name)
        if name not in self.units:
            return None
        delay = next((ms for frag, ms in self.stop_ms.items() if frag in name), 5)
        return self._job(delay, lambda: self.units.pop(name, None))

    def kill(self, name: str, signal: int) -> None:
        self._enter(f"kill{signal}", name)
        self.units.pop(name, None)

    def list_units(self, prefix: str, *, fresh: bool = False) -> list[UnitInfo]:
        self.max_depth = max(self.max_depth, GLib.main_depth())
        return [
            UnitInfo(u.name, u.active, "running", 0, u.pid, False, u.description)
            for u in self.units.values()
            if u.name.startswith(prefix)
        ]

    def on_change(self, callback: Callable[[], None]) -> None:
        self._changed = callback

    def on_job_removed(self, callback: Callable[[str, str], None]) -> None:
        self._job_cbs.append(callback)

    def job_type(self, unit: str) -> str:
        return self.job_type_now

    def system_state(self) -> str:
        return self.state_now

    def started(self, fragment: str) -> int:
        return sum(1 for what, n in self.calls if what == "start" and fragment in n)


class FakeFiles:
    def __init__(self) -> None:
        self.digests: dict[str, str] = {}
        self.cleared = 0

    def write(self, settings: Settings) -> dict[str, str]:
        return dict(self.digests)

    def clear(self) -> None:
        self.cleared += 1


class Notes:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message: str) -> None:
        self.sent.append(message)


class FakeFollower:
    def __init__(self, unit: str, on_line: Callable[[str], None]) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class World:
    units: FakeUnits
    files: FakeFiles
    notes: Notes
    probes: list[str]
    commands: list[tuple[int, str]]
    tmp: Path
    settings_env: dict[str, str]
    ignore_pause: bool = False  # IBC acknowledges PAUSE but the Gateway never shuts down

    def make(
        self,
        env: dict[str, str] | None = None,
        watchdog_s: float = 0,
        wallclock: Callable[[], float] = time.time,
    ) -> sup.Supervisor:
        env = env or self.settings_env
        settings = load(env, self.tmp)
        return sup.Supervisor(
            names=NAMES,
            settings=settings,
            paths=Paths(runtime_dir=self.tmp / "run", state_dir=self.tmp / "state"),
            load_settings=lambda: load(self.settings_env, self.tmp),
            files=self.files,
            units=self.units,
            notifier=self.notes,
            executor=ThreadPoolExecutor(2),
            digest_key=KEY,
            watchdog_s=watchdog_s,
            wallclock=wallclock,
        )


def run_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    context = GLib.MainContext.default()
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        context.iteration(False) or time.sleep(0.005)


def drain(seconds: float) -> None:
    end = time.monotonic() + seconds
    run_until(lambda: time.monotonic() > end, seconds + 5)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    (tmp_path / "state").mkdir()
    probes: list[str] = []
    commands: list[tuple[int, str]] = []

    def probe(kind: str) -> Callable[..., ProbeResult]:
        def run(*args: Any, **kwargs: Any) -> ProbeResult:
            probes.append(kind)
            return ProbeResult(Outcome.OK, 0.001, 176)

        return run

    def command(host: str, port: int, cmd: str, timeout: float) -> str:
        """IBC's command server: STOP and PAUSE end the IBC unit a moment later."""
        commands.append((port, cmd))
        if cmd == "STOP" or (cmd == "PAUSE" and not w.ignore_pause):
            mode = next(
                g.mode.value for g in load(DUAL_ENV, tmp_path).gateways if g.command_port == port
            )
            name = NAMES.unit("ibc", mode)
            GLib.timeout_add(
                50 if cmd == "STOP" else 300, lambda: units.units.pop(name, None) and False
            )
        return "OK"

    units = FakeUnits()
    w = World(units, FakeFiles(), Notes(), probes, commands, tmp_path, BASE_ENV | LIVE | FAST)
    monkeypatch.setattr(sup, "probe_full", probe("full"))
    monkeypatch.setattr(sup, "probe_handshake", probe("handshake"))
    monkeypatch.setattr(sup, "send_command", command)
    monkeypatch.setattr(sup, "JournalFollower", FakeFollower)
    return w


def ready(s: sup.Supervisor) -> bool:
    return s.status().ready


def relay_running(w: World) -> bool:
    return any("relay" in n for n in w.units.units)


def test_fresh_start_starts_everything_once_and_becomes_ready(world: World) -> None:
    s = world.make()
    s.start()
    run_until(lambda: ready(s) and relay_running(world))
    assert world.units.started("display") == 1 and world.units.started("ibc-live") == 1
    assert any(m.startswith("READY=1") for m in world.notes.sent)
    assert world.units.max_depth <= 1  # never called from a nested main-loop iteration


def test_a_second_ibgwd_adopts_every_unit_and_is_ready_without_a_start(world: World) -> None:
    first = world.make()
    first.start()
    run_until(lambda: ready(first) and relay_running(world))
    first.stop(StopKind.DETACH)
    running = dict(world.units.units)
    calls = len(world.units.calls)

    second = world.make()
    second.start()
    run_until(lambda: ready(second))
    drain(0.3)
    assert world.units.units == running  # same units, same pids
    assert [c for c in world.units.calls[calls:] if c[0] != "list"] == []
    assert second.status().gateways[0].detail != ""


def test_adoption_replaces_only_what_differs_and_stops_leftovers(world: World) -> None:
    first = world.make(DUAL_ENV | FAST)
    first.start()
    run_until(lambda: ready(first) and sum("relay" in n for n in world.units.units) == 2)
    first.stop(StopKind.DETACH)
    ibc_live = world.units.units["ibgwd-default-ibc-live.service"].pid
    display = world.units.units["ibgwd-default-display.service"].pid
    relays = {m: world.units.units[NAMES.unit("relay", m)].pid for m in ("live", "paper")}

    world.files.digests = {"ibc-paper": "new config.ini"}  # only paper's config changed
    world.settings_env = DUAL_ENV | FAST
    second = world.make()
    second.start()
    run_until(lambda: ready(second) and sum("relay" in n for n in world.units.units) == 2)
    assert world.units.units["ibgwd-default-ibc-live.service"].pid == ibc_live
    assert world.units.units["ibgwd-default-display.service"].pid == display
    assert world.units.started("ibc-paper") == 2 and world.units.started("ibc-live") == 1
    # The relay in front of the restarted Gateway was stopped (it would accept and drop clients
    # while the Gateway logs in) and started again once the API answered; the other was kept.
    assert world.units.units["ibgwd-default-relay-live.service"].pid == relays["live"]
    assert world.units.units["ibgwd-default-relay-paper.service"].pid != relays["paper"]

    # A mode switched off while ibgwd was down: its units are leftovers and get stopped.
    second.stop(StopKind.DETACH)
    third = world.make(BASE_ENV | FAST | LIVE)
    third.start()
    run_until(lambda: not any("paper" in n for n in world.units.units))
    run_until(lambda: ready(third))
    assert world.units.units["ibgwd-default-display.service"].pid == display


def test_dual_reload_with_slow_ibc_stops_runs_without_nested_loops_or_spurious_recovery(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The review's reproduction: a dual-mode reload that changes both config.ini files while
    IBC takes longer than 100 ms to stop raised KeyError 'ibc-live' from a nested loop."""
    world.settings_env = DUAL_ENV | FAST
    world.units.stop_ms = {"ibc-": 400}
    s = world.make()
    s.start()
    run_until(lambda: ready(s) and sum("relay" in n for n in world.units.units) == 2)
    world.files.digests = {"ibc-live": "2", "ibc-paper": "2"}
    changed = s.reload()
    assert set(changed) >= {"ibc-live", "ibc-paper"}
    assert s.status().reloading
    run_until(lambda: not s.status().reloading)
    run_until(lambda: ready(s))
    drain(1.5)
    assert world.units.started("ibc-live") == 2 and world.units.started("ibc-paper") == 2
    assert world.units.max_depth <= 1
    assert "callback_failed" not in caplog.text and "KeyError" not in caplog.text
    for g in s.status().gateways:
        assert g.recoveries == {} or sum(g.recoveries.values()) == 0, g
    stop_live = world.units.calls.index(("stop", "ibgwd-default-ibc-live.service"))
    second_start = [
        i
        for i, c in enumerate(world.units.calls)
        if c == ("start", "ibgwd-default-ibc-live.service")
    ][1]
    assert stop_live < second_start


def test_an_exception_in_a_probe_callback_keeps_probing(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s = world.make()
    s.start()
    run_until(lambda: ready(s))
    real = sup.health.on_probe
    failures = iter([True, True])

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if next(failures, False):
            raise RuntimeError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(sup.health, "on_probe", flaky)
    count = len(world.probes)
    run_until(lambda: len(world.probes) >= count + 5, 20)
    assert caplog.text.count("event=callback_failed callback=_probe_done") == 2
    assert s.status().gateways[0].probes_total > 0


def test_a_probe_that_raises_in_its_thread_does_not_stop_probing(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    s = world.make()
    s.start()
    run_until(lambda: ready(s))
    calls = itertools.count()

    def broken(*args: Any, **kwargs: Any) -> ProbeResult:
        world.probes.append("broken")
        if next(calls) == 0:
            raise ValueError("bug in a probe")
        return ProbeResult(Outcome.OK, 0.001, 176)

    monkeypatch.setattr(sup, "probe_handshake", broken)
    run_until(lambda: world.probes.count("broken") >= 3, 20)
    assert "event=probe_crashed" in caplog.text


def test_stop_sends_stop_to_ibc_first_then_stops_every_child(world: World) -> None:
    s = world.make()
    s.start()
    run_until(lambda: ready(s) and relay_running(world))
    done: list[bool] = []
    s.stop(StopKind.STOP, done=lambda: done.append(True))
    run_until(lambda: bool(done))
    assert [c for _p, c in world.commands] == ["STOP"]
    assert world.units.units == {}
    assert world.files.cleared == 1
    killed = [n for what, n in world.units.calls if what == f"kill{int(signal.SIGTERM)}"]
    assert killed[0].endswith("relay-live.service")  # clients refused first
    assert killed[-1].endswith("display.service")  # the display last


def test_shutdown_pauses_a_logged_in_gateway_and_stops_one_that_is_not(world: World) -> None:
    world.settings_env = DUAL_ENV | FAST
    s = world.make()
    s.start()
    run_until(lambda: ready(s))
    # paper never logged in (as if still waiting for 2FA): it gets STOP, live gets PAUSE.
    paper = s._gateways["paper"]  # a white-box view of one gateway
    paper.health = sup.replace(paper.health, ever_ready=False, state=State.WAITING_2FA)
    done: list[bool] = []
    s.stop(StopKind.PAUSE, done=lambda: done.append(True))
    run_until(lambda: bool(done))
    sent = {(p, c) for p, c in world.commands}
    live, paper_settings = load(DUAL_ENV, world.tmp).gateways
    assert (live.command_port, "PAUSE") in sent
    assert (paper_settings.command_port, "STOP") in sent
    assert world.units.units == {}


def test_detach_leaves_every_child_and_its_files(world: World) -> None:
    s = world.make()
    s.start()
    run_until(lambda: ready(s) and relay_running(world))
    before = dict(world.units.units)
    done: list[bool] = []
    s.stop(StopKind.DETACH, done=lambda: done.append(True))
    assert done == [True]
    assert world.units.units == before
    assert world.commands == [] and world.files.cleared == 0


@pytest.mark.parametrize(
    ("job", "state", "action", "expected"),
    [
        ("restart", "running", "pause", StopKind.DETACH),
        ("try-restart", "degraded", "pause", StopKind.DETACH),
        ("stop", "running", "pause", StopKind.STOP),
        ("", "running", "pause", StopKind.STOP),
        ("stop", "stopping", "pause", StopKind.PAUSE),
        ("stop", "stopping", "stop", StopKind.STOP),
        ("restart", "stopping", "pause", StopKind.PAUSE),
        (None, "running", "pause", StopKind.STOP),
    ],
)
def test_stop_kind(job: str | None, state: str, action: str, expected: StopKind) -> None:
    assert plan.stop_kind(job, state, action) is expected


def test_digest_tag_round_trips_and_depends_on_key_and_content(tmp_path: Path) -> None:
    settings = load(BASE_ENV | LIVE, tmp_path)
    paths = Paths(runtime_dir=tmp_path, state_dir=tmp_path)
    ibc = plan.static_specs(settings, NAMES, paths, {"ibc-live": "a"})["ibc-live"]
    other = plan.static_specs(settings, NAMES, paths, {"ibc-live": "b"})["ibc-live"]
    tag = plan.tagged_description(ibc, KEY)
    assert tag.startswith(ibc.description) and plan.digest_of(tag) == plan.spec_digest(ibc, KEY)
    assert plan.spec_digest(ibc, KEY) != plan.spec_digest(other, KEY)
    assert plan.spec_digest(ibc, KEY) != plan.spec_digest(ibc, b"x" * 32)
    assert plan.digest_of(ibc.description) == ""


def test_shutdown_action_defaults_to_pause_on_a_host_and_stop_in_a_container(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "container"
    assert app.shutdown_action("", marker) == "pause"
    assert app.shutdown_action("stop", marker) == "stop"
    marker.write_text("podman\n")
    assert app.shutdown_action("", marker) == "stop"
    assert app.shutdown_action("pause", marker) == "pause"


def test_digest_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "unit-digest.key"
    key = app.digest_key(path)
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert app.digest_key(path) == key


def test_a_refused_start_is_retried_from_what_runs_then(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sup, "RETRY_CONVERGE_S", 0.2)
    world.units.refuse = {"ibc-live"}
    s = world.make()
    s.start()
    run_until(lambda: ready(s) and relay_running(world))
    assert "event=start_failed" in caplog.text
    assert world.units.started("display") == 1  # running already: not started again
    assert world.units.started("ibc-live") == 2  # the refused call, then the retry


def test_watchdog_pings_only_while_probes_keep_completing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sup, "TICK_S", 0.2)
    s = world.make(watchdog_s=0.1)
    s.start()
    run_until(lambda: ready(s))
    drain(0.5)
    assert world.notes.sent.count("WATCHDOG=1") >= 3
    release = threading.Event()

    def wedged(*args: Any, **kwargs: Any) -> ProbeResult:
        release.wait(30)  # a probe that never returns: the health loop makes no progress
        return ProbeResult(Outcome.OK, 0.001, 176)

    monkeypatch.setattr(sup, "probe_handshake", wedged)
    drain(5)  # longer than interval + 2 timeouts + 2 ticks
    pings = world.notes.sent.count("WATCHDOG=1")
    drain(1)
    release.set()
    assert world.notes.sent.count("WATCHDOG=1") == pings  # systemd will restart ibgwd


def test_a_pause_that_does_not_end_the_gateway_in_time_falls_back_to_stop(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IBC acknowledged PAUSE but the Gateway is still up after the next minute + the bound."""
    world.ignore_pause = True
    monkeypatch.setattr(sup, "PAUSE_SHUTDOWN_S", 0.3)
    before_minute = (time.time() // 60 + 1) * 60 - 0.2  # 0.2 s before a minute starts
    s = world.make(wallclock=lambda: before_minute)
    s.start()
    run_until(lambda: ready(s))
    done: list[bool] = []
    s.stop(StopKind.PAUSE, done=lambda: done.append(True))
    run_until(lambda: bool(done), 15)
    assert [c for _p, c in world.commands] == ["PAUSE", "STOP"]
    assert world.units.units == {}
