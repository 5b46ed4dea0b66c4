"""Notifications: which events a sequence of status snapshots yields, and the webhook sender."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from ibgwd.notifications.events import Kind, Tracker
from ibgwd.notifications.service import WebhookSender, redacted_url
from ibgwd.status import GatewayStatus, State, Status

T0 = 1_700_000_000.0
FAILED = "login failed, IBC retries"


def gw(state: State, detail: str = "", **kw: object) -> GatewayStatus:
    base = GatewayStatus(
        mode="paper",
        state=state,
        api_port=4002,
        relay_port=4004,
        api_up=state is State.READY,
        last_probe_timestamp=0.0,
        last_probe_latency_s=0.0,
        last_success_timestamp=0.0,
        probes_total=0,
        probe_failures_total=0,
        consecutive_failures=0,
        detail=detail,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def snap(*gateways: GatewayStatus) -> Status:
    return Status(
        instance="default",
        version="1",
        trading_mode="paper",
        state=gateways[0].state,
        ready=all(g.state is State.READY for g in gateways),
        status_text="",
        started_timestamp=T0,
        ready_timestamp=0.0,
        gateways=gateways,
    )


def kinds(tracker: Tracker, steps: list[tuple[float, GatewayStatus]]) -> list[Kind]:
    out: list[Kind] = []
    for t, g in steps:
        out += [e.kind for e in tracker.observe(snap(g), T0 + t)]
    return out


def test_login_with_2fa_approval_prompts_once_with_its_deadline_then_ready() -> None:
    tracker = Tracker(notify_after_s=300)
    tracker.observe(snap(gw(State.LOGGING_IN)), T0 + 1)
    events = tracker.observe(snap(gw(State.WAITING_2FA, "waiting for 2FA approval")), T0 + 5)
    assert [e.kind for e in events] == [Kind.TWOFA_PROMPT]
    assert events[0].deadline_timestamp == T0 + 5 + 180  # IBC's SecondFactorAuthenticationTimeout
    assert "IBKR Mobile" in events[0].message and "3min left" in events[0].message
    assert events[0].priority == 5
    after = kinds(
        tracker,
        [
            (20, gw(State.LOGGING_IN, "login completed, waiting for the API")),
            (22, gw(State.READY)),
            (30, gw(State.READY, last_probe_timestamp=T0 + 30)),
        ],
    )
    assert after == [Kind.READY]


def test_exact_deadline_from_the_snapshot_is_used_and_a_new_deadline_is_a_new_prompt() -> None:
    tracker = Tracker(notify_after_s=0)
    tracker.observe(snap(gw(State.LOGGING_IN)), T0)
    first = gw(State.WAITING_2FA, twofa_deadline_timestamp=T0 + 100)
    events = tracker.observe(snap(first), T0 + 1)
    assert [(e.kind, e.deadline_timestamp) for e in events] == [(Kind.TWOFA_PROMPT, T0 + 100)]
    # IBC logs in again after the timeout: the same state, a later deadline
    second = gw(State.WAITING_2FA, twofa_deadline_timestamp=T0 + 300)
    events = tracker.observe(snap(second), T0 + 120)
    assert [e.kind for e in events] == [Kind.TWOFA_EXPIRED, Kind.TWOFA_PROMPT]


def test_expired_2fa_state_is_one_expiry_with_the_health_loops_words() -> None:
    tracker = Tracker(notify_after_s=0)
    detail = "2FA prompt expired; IBC waits, ibgwd starts a new login after LOGIN_TIMEOUT"
    got = []
    for t, g in [
        (1, gw(State.LOGGING_IN)),
        (2, gw(State.WAITING_2FA, twofa_deadline_timestamp=T0 + 182)),
        (190, gw(State.EXPIRED_2FA, detail)),
        (200, gw(State.EXPIRED_2FA, detail)),
    ]:
        got += tracker.observe(snap(g), T0 + t)
    assert [e.kind for e in got] == [Kind.TWOFA_PROMPT, Kind.TWOFA_EXPIRED]
    assert detail in got[1].message


def test_device_selection_needs_a_human_too() -> None:
    tracker = Tracker(notify_after_s=0)
    tracker.observe(snap(gw(State.LOGGING_IN)), T0)
    events = tracker.observe(snap(gw(State.SELECT_2FA_DEVICE)), T0 + 1)
    assert [e.kind for e in events] == [Kind.TWOFA_PROMPT]
    assert "TWOFA_DEVICE" in events[0].message


def test_halted_login_failure_is_reported_once_with_its_reason() -> None:
    tracker = Tracker(notify_after_s=0)
    reason = "login failed: check TWS_USERID / TWS_PASSWORD for the paper gateway"
    halted = gw(State.LOGIN_FAILED, reason, login_failures=1, login_failed_reason=reason)
    got = kinds(tracker, [(1, gw(State.LOGGING_IN)), (3, halted), (13, halted)])
    assert got == [Kind.LOGIN_FAILED]


def test_2fa_expiry_is_reported_when_the_prompt_ends_without_approval() -> None:
    tracker = Tracker(notify_after_s=0)
    got = kinds(
        tracker,
        [
            (1, gw(State.LOGGING_IN)),
            (2, gw(State.WAITING_2FA)),
            (60, gw(State.RECOVERING, "IBC/Gateway process exited")),
            (70, gw(State.LOGGING_IN)),
            (75, gw(State.WAITING_2FA)),
        ],
    )
    assert got == [Kind.TWOFA_PROMPT, Kind.TWOFA_EXPIRED, Kind.TWOFA_PROMPT]


def test_2fa_deadline_passing_without_a_new_snapshot_is_noticed_by_the_tick() -> None:
    tracker = Tracker(notify_after_s=0)
    kinds(tracker, [(1, gw(State.LOGGING_IN)), (2, gw(State.WAITING_2FA))])
    assert tracker.tick(T0 + 100) == []
    assert tracker.tick(T0 + 183) == []  # the health loop says it first, with what follows
    assert [e.kind for e in tracker.tick(T0 + 213)] == [Kind.TWOFA_EXPIRED]
    assert tracker.tick(T0 + 230) == []  # once
    # the prompt ending afterwards is not a second expiry
    assert kinds(tracker, [(210, gw(State.RECOVERING))]) == []


def test_wrong_password_reports_each_failed_login_and_the_rate_limit() -> None:
    tracker = Tracker(notify_after_s=0)
    got = kinds(
        tracker,
        [
            (1, gw(State.LOGGING_IN)),
            (3, gw(State.LOGGING_IN, FAILED, recoveries={"login_failed": 1})),
            (9, gw(State.LOGGING_IN, FAILED, recoveries={"login_failed": 2})),
            (9.5, gw(State.LOGGING_IN, FAILED, recoveries={"login_failed": 2})),
            (
                15,
                gw(State.RATE_LIMITED, "login failed repeatedly", recoveries={"login_failed": 3}),
            ),
        ],
    )
    assert got == [Kind.LOGIN_FAILED, Kind.LOGIN_FAILED, Kind.LOGIN_FAILED, Kind.RATE_LIMITED]


def test_down_longer_than_notify_after_once_per_outage_then_ready_again() -> None:
    tracker = Tracker(notify_after_s=60)
    assert kinds(tracker, [(1, gw(State.READY))]) == [Kind.READY]  # first ready of the run
    assert kinds(tracker, [(100, gw(State.DEGRADED, "API timeout"))]) == []
    assert tracker.tick(T0 + 150) == []
    down = tracker.tick(T0 + 161)
    assert [e.kind for e in down] == [Kind.DOWN]
    assert down[0].since_timestamp == T0 + 100
    assert tracker.tick(T0 + 300) == []
    assert kinds(tracker, [(310, gw(State.RECOVERING))]) == []
    ready = tracker.observe(snap(gw(State.READY)), T0 + 320)
    assert [e.kind for e in ready] == [Kind.READY]
    assert "again" in ready[0].message and "4004" in ready[0].message


def test_a_short_blip_or_a_quiet_restart_sends_nothing() -> None:
    tracker = Tracker(notify_after_s=300)
    kinds(tracker, [(1, gw(State.READY))])
    got = kinds(
        tracker,
        [(100, gw(State.RESTARTING, "Gateway restarting")), (160, gw(State.READY))],
    )
    assert got == []
    assert tracker.tick(T0 + 1000) == []


def test_stopping_is_not_an_outage() -> None:
    tracker = Tracker(notify_after_s=10)
    kinds(tracker, [(1, gw(State.READY)), (5, gw(State.STOPPING))])
    assert tracker.tick(T0 + 100) == []


def test_the_next_full_login_and_a_soft_restart_are_announced_the_daily_restart_is_not() -> None:
    tracker = Tracker(notify_after_s=0)
    week = T0 + 3 * 86400
    ready = gw(State.READY, next_cold_restart_timestamp=week, next_restart_timestamp=T0 + 3600)
    got = tracker.observe(snap(ready), T0 + 1)
    assert [e.kind for e in got] == [Kind.READY, Kind.RESTART_SCHEDULED]
    assert "2FA" in got[1].message and got[1].deadline_timestamp == week
    # the daily restart moving on to the next day is no news
    moved = replace(ready, next_restart_timestamp=T0 + 86400 + 3600)
    assert tracker.observe(snap(moved), T0 + 2) == []
    # an accepted soft restart is
    soft = replace(moved, soft_restart_timestamp=T0 + 60)
    got = tracker.observe(snap(soft), T0 + 3)
    assert [e.kind for e in got] == [Kind.RESTART_SCHEDULED] and "Soft restart" in got[0].message
    assert tracker.observe(snap(soft), T0 + 4) == []


def test_payload_is_json_for_ntfy_gotify_and_webhooks_and_has_no_secret_fields() -> None:
    tracker = Tracker(notify_after_s=0)
    tracker.observe(snap(gw(State.LOGGING_IN)), T0)
    event = tracker.observe(snap(gw(State.WAITING_2FA)), T0 + 1)[0]
    body = event.as_dict(topic="alerts")
    assert set(body) >= {"title", "message", "priority", "tags", "topic", "event", "mode"}
    assert body["event"] == "twofa_prompt" and body["topic"] == "alerts"
    assert isinstance(body["priority"], int) and 1 <= body["priority"] <= 5
    json.dumps(body)
    env = event.environment()
    assert env["IBGWD_EVENT"] == "twofa_prompt" and env["IBGWD_DEADLINE"] == str(int(T0 + 181))


class FakePost:
    def __init__(self, codes: list[int | Exception]) -> None:
        self.codes = codes
        self.bodies: list[dict[str, object]] = []
        self.done = threading.Event()

    def __call__(self, url: str, body: bytes, timeout_s: float) -> int:
        self.bodies.append(json.loads(body))
        code = self.codes.pop(0) if self.codes else 200
        if not self.codes:
            self.done.set()
        if isinstance(code, Exception):
            raise code
        return code


def _event():  # type: ignore[no-untyped-def]
    tracker = Tracker(notify_after_s=0)
    tracker.observe(snap(gw(State.LOGGING_IN)), T0)
    return tracker.observe(snap(gw(State.WAITING_2FA)), T0 + 1)[0]


def test_webhook_retries_with_backoff_until_accepted() -> None:
    post = FakePost([OSError("refused"), 503, 429, 200])
    sleeps: list[float] = []
    sender = WebhookSender("http://127.0.0.1:1/hook", post=post, sleep=sleeps.append)
    sender.put(_event())
    assert post.done.wait(5)
    sender.close()
    assert sleeps == [1.0, 2.0, 4.0]
    assert sender.sent == 1 and len(post.bodies) == 4


def test_webhook_gives_up_on_a_client_error_and_keeps_going() -> None:
    post = FakePost([404, 200])
    sender = WebhookSender("http://127.0.0.1:1/hook", post=post, sleep=lambda s: None)
    sender.put(_event())
    sender.put(_event())
    assert post.done.wait(5)
    sender.close()
    assert sender.dropped == 1 and sender.sent == 1


def test_webhook_put_never_blocks_when_the_receiver_hangs() -> None:
    gate = threading.Event()

    def hang(url: str, body: bytes, timeout_s: float) -> int:
        gate.wait(5)
        return 200

    sender = WebhookSender("http://127.0.0.1:1/hook", post=hang, sleep=lambda s: None)
    for _ in range(200):  # more than the queue holds: the rest is dropped, put() returns
        sender.put(_event())
    assert sender.dropped >= 200 - 64 - 1
    gate.set()
    sender.close()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://gotify.example/message?token=AbC123", "https://gotify.example/…"),
        ("http://user:pw@10.0.0.1:8080/x", "http://10.0.0.1:8080/…"),
    ],
)
def test_logged_url_hides_path_query_and_credentials(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


# --- the service: command units and reload ---------------------------------------------


def _settings(tmp_path, env):  # type: ignore[no-untyped-def]
    from settings_samples import BASE_ENV, load

    return load({**BASE_ENV, **env}, tmp_path)


def test_notify_command_runs_as_a_oneshot_unit_with_the_event_in_its_environment(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from ibgwd.names import InstanceNames
    from ibgwd.notifications.service import Notifications
    from ibgwd.units.spec import Paths, UnitSpec

    settings = _settings(tmp_path, {"NOTIFY_COMMAND": 'logger -t ibgwd "$IBGWD_TITLE"'})
    started: list[UnitSpec] = []
    paths = Paths(runtime_dir=Path("/run/ibgwd/default"), state_dir=Path("/var/lib/ibgwd/default"))
    n = Notifications(
        settings, InstanceNames("default"), paths, started.append, clock=lambda: T0 + 5
    )
    assert n.enabled
    n.on_status(snap(gw(State.LOGGING_IN)))
    n.on_status(snap(gw(State.WAITING_2FA)))
    assert len(started) == 1
    spec = started[0]
    assert spec.exec_start == ("/bin/sh", "-c", 'logger -t ibgwd "$IBGWD_TITLE"')
    assert spec.service_type == "oneshot" and spec.user == "ibgateway"
    assert spec.name.startswith("ibgwd-default-notify-") and spec.name.endswith(".service")
    env = dict(e.split("=", 1) for e in spec.environment)
    assert env["IBGWD_EVENT"] == "twofa_prompt" and env["IBGWD_MODE"] == "paper"
    assert "live-pass" not in repr(spec)  # the password of BASE_ENV


def test_a_failing_command_start_never_breaks_supervision(tmp_path: object) -> None:
    from pathlib import Path

    from ibgwd.names import InstanceNames
    from ibgwd.notifications.service import Notifications
    from ibgwd.units.spec import Paths, UnitSpec

    def refuse(spec: UnitSpec) -> None:
        raise RuntimeError("systemd said no")

    settings = _settings(tmp_path, {"NOTIFY_COMMAND": "true"})
    paths = Paths(runtime_dir=Path("/run/x"), state_dir=Path("/var/lib/x"))
    n = Notifications(settings, InstanceNames("default"), paths, refuse, clock=lambda: T0)
    n.on_status(snap(gw(State.READY)))  # no exception


def test_reload_picks_up_new_notify_settings(tmp_path: object) -> None:
    from pathlib import Path

    from ibgwd.names import InstanceNames
    from ibgwd.notifications.service import Notifications
    from ibgwd.units.spec import Paths

    class Hook:
        def __init__(self, url: str, topic: str) -> None:
            self.url, self.topic, self.events = url, topic, []  # type: ignore[var-annotated]

        def put(self, event: object) -> None:
            self.events.append(event)

        def close(self, timeout_s: float = 0) -> None:
            pass

    made: list[Hook] = []

    def factory(url: str, topic: str) -> Hook:
        made.append(Hook(url, topic))
        return made[-1]

    first = _settings(tmp_path, {})
    second = _settings(tmp_path, {"NOTIFY_URL": "https://ntfy.example/", "NOTIFY_TOPIC": "t"})
    paths = Paths(runtime_dir=Path("/run/x"), state_dir=Path("/var/lib/x"))
    n = Notifications(
        first,
        InstanceNames("default"),
        paths,
        lambda spec: None,
        reload_settings=lambda: second,
        clock=lambda: T0,
        webhook_factory=factory,  # type: ignore[arg-type]
    )
    assert not n.enabled and made == []
    n.on_status(snap(gw(State.READY)))
    n.on_status(replace(snap(gw(State.READY)), reloads_total=1))
    assert n.enabled and [(h.url, h.topic) for h in made] == [("https://ntfy.example/", "t")]
    n.on_status(replace(snap(gw(State.DEGRADED)), reloads_total=1))
    assert made[0].events == []  # degraded alone is no event; the webhook is wired


def test_notify_test_reports_what_the_webhook_and_the_command_did(tmp_path: object) -> None:
    from pathlib import Path

    from ibgwd.names import InstanceNames
    from ibgwd.notifications.service import Notifications
    from ibgwd.units.spec import Paths, UnitSpec

    bodies: list[dict[str, object]] = []

    def post(url: str, body: bytes, timeout_s: float) -> int:
        bodies.append(json.loads(body))
        return 200

    settings = _settings(
        tmp_path, {"NOTIFY_URL": "https://ntfy.example/", "NOTIFY_COMMAND": "true"}
    )
    started: list[UnitSpec] = []
    paths = Paths(runtime_dir=Path("/run/x"), state_dir=Path("/var/lib/x"))
    n = Notifications(
        settings,
        InstanceNames("default"),
        paths,
        started.append,
        clock=lambda: T0,
        webhook_factory=lambda url, topic: WebhookSender(url, topic, post=post),
    )
    done = threading.Event()
    reports: list[tuple[bool, str]] = []

    def report(ok: bool, detail: str) -> None:
        reports.append((ok, detail))
        done.set()

    n.test(snap(gw(State.READY)), report, lambda callback: callback())
    assert done.wait(5)
    n.close()
    ok, detail = reports[0]
    assert ok and "https://ntfy.example/… accepted it (HTTP 200)" in detail
    assert "NOTIFY_COMMAND started as ibgwd-default-notify-" in detail
    assert bodies[0]["event"] == "test" and bodies[0]["title"] == "ibgwd default: test notification"
    assert dict(e.split("=", 1) for e in started[0].environment)["IBGWD_EVENT"] == "test"


def test_notify_test_without_targets_says_so(tmp_path: object) -> None:
    from pathlib import Path

    from ibgwd.names import InstanceNames
    from ibgwd.notifications.service import Notifications
    from ibgwd.units.spec import Paths

    paths = Paths(runtime_dir=Path("/run/x"), state_dir=Path("/var/lib/x"))
    n = Notifications(
        _settings(tmp_path, {}), InstanceNames("default"), paths, lambda s: None, clock=lambda: T0
    )
    reports: list[tuple[bool, str]] = []
    n.test(None, lambda ok, d: reports.append((ok, d)), lambda callback: callback())
    assert reports == [(False, "no NOTIFY_URL and no NOTIFY_COMMAND set: nothing to send")]


def test_a_reported_webhook_event_is_tried_once() -> None:
    post = FakePost([503])
    sleeps: list[float] = []
    sender = WebhookSender("http://127.0.0.1:1/hook", post=post, sleep=sleeps.append)
    done = threading.Event()
    got: list[tuple[bool, str]] = []
    sender.put(_event(), lambda ok, d: (got.append((ok, d)), done.set()))  # type: ignore[func-returns-value]
    assert done.wait(5)
    sender.close()
    assert got == [(False, "http://127.0.0.1:1/… failed: HTTP 503")] and sleeps == []
