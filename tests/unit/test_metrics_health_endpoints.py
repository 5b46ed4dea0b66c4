"""/livez and /readyz decisions (ibgwd.metrics.liveness / readiness): pure functions of the
status snapshot and the loop check, as the contract in the docs states them."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ibgwd.metrics import Health, liveness, readiness
from ibgwd.status import STATE_SEVERITY, GatewayStatus, State, Status


def gateway(mode: str, state: State) -> GatewayStatus:
    return GatewayStatus(
        mode=mode,
        state=state,
        api_port=4002 if mode == "paper" else 4001,
        relay_port=4004 if mode == "paper" else 4003,
        api_up=state is State.READY,
        last_probe_timestamp=0.0,
        last_probe_latency_s=0.0,
        last_success_timestamp=0.0,
        probes_total=0,
        probe_failures_total=0,
        consecutive_failures=0,
    )


def status(live: State, paper: State, text: str = "live: ready; paper: waiting") -> Status:
    gateways = (gateway("live", live), gateway("paper", paper))
    worst = max((live, paper), key=STATE_SEVERITY.__getitem__)
    return Status(
        instance="default",
        version="0.1.0",
        trading_mode="both",
        state=worst,
        ready=live is State.READY and paper is State.READY,
        status_text=text,
        started_timestamp=1.0,
        ready_timestamp=0.0,
        gateways=gateways,
    )


def test_ready_when_every_gateway_is_ready() -> None:
    answer = readiness(status(State.READY, State.READY, "ready"))
    assert answer.code == 200 and answer.ok
    assert answer.body == {"status": "ok", "gateways": {"live": "ready", "paper": "ready"}}


@pytest.mark.parametrize(
    "paper", [s for s in State if s is not State.READY], ids=lambda s: str(s.value)
)
def test_not_ready_names_the_reason_and_each_gateways_state(paper: State) -> None:
    answer = readiness(status(State.READY, paper, "paper: waiting for 2FA approval"))
    assert answer.code == 503
    assert answer.body == {
        "status": "not ready",
        "reason": "paper: waiting for 2FA approval",
        "gateways": {"live": "ready", "paper": paper.value},
    }


def test_not_ready_while_stopping_even_if_the_gateways_still_answer() -> None:
    stopping = replace(status(State.READY, State.READY, "stopping"), state=State.STOPPING)
    assert stopping.ready  # the gateways' own states are still READY
    assert readiness(stopping).code == 503


def test_not_ready_before_any_gateway_exists() -> None:
    starting = Status(
        instance="default",
        version="0.1.0",
        trading_mode="paper",
        state=State.STARTING,
        ready=False,
        status_text="starting",
        started_timestamp=1.0,
        ready_timestamp=0.0,
    )
    answer = readiness(starting)
    assert answer.code == 503 and answer.body["gateways"] == {}


@pytest.mark.parametrize(
    "state", [s for s in State if s is not State.FAILED], ids=lambda s: str(s.value)
)
def test_alive_whatever_the_gateway_does_short_of_failed(state: State) -> None:
    # Logging in, 2FA, a zombie API, recovery, rate limiting: ibgwd is handling it; restarting
    # the container would only add a cold login.
    answer = liveness(status(state, state), loop_responds=True)
    assert (answer.code, answer.body) == (200, {"status": "ok"})


def test_not_alive_when_the_instance_failed() -> None:
    failed = status(State.FAILED, State.READY, "live: failed (recovery failed)")
    answer = liveness(failed, loop_responds=True)
    assert answer.code == 503
    assert answer.body == {"status": "failed", "reason": "live: failed (recovery failed)"}


def test_not_alive_when_the_loop_does_not_respond() -> None:
    answer = liveness(status(State.READY, State.READY), loop_responds=False)
    assert answer.code == 503
    assert answer.body["status"] == "failed"
    assert "main loop did not respond" in str(answer.body["reason"])


def test_health_reads_the_latest_snapshot_and_asks_the_loop_on_each_call() -> None:
    snapshots = [status(State.LOGGING_IN, State.READY), status(State.READY, State.READY)]
    asked: list[bool] = []

    def loop() -> bool:
        asked.append(True)
        return True

    health = Health(lambda: snapshots[0], loop)
    assert health.ready().code == 503 and health.live().code == 200
    snapshots.pop(0)
    assert health.ready().code == 200
    assert len(asked) == 1  # readiness never waits for the loop
