"""/livez and /readyz of the real ibgwd under systemd, asked with curl (issue 16's acceptance):
503 while logging in (2FA pending), 200 when ready, 503 while the API is a zombie, and /livez
200 throughout: none of that is a reason to restart ibgwd.

Each test boots its own box with ibgwd and the simulated gateway (tests/system/stack.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

BASE = "http://127.0.0.1:9108"
STATE = "/var/lib/ibgwd/default"
EVENTS = f"{STATE}/settings/sim-events.log"
DEST = ("org.ibgwd.Gateway1.default", "/org/ibgwd/Gateway1", "org.ibgwd.Gateway1.Manager")
WAIT_S = 120.0


def curl(box: Box, path: str) -> tuple[int, dict[str, Any]]:
    """(HTTP code, JSON body) as curl sees them; (0, {}) when nothing listens yet."""
    r = box.run(
        "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", f"{BASE}{path}", check=False
    )
    if r.returncode != 0:
        return 0, {}
    body, _, code = r.stdout.rpartition("\n")
    return int(code), json.loads(body) if body else {}


def events(box: Box) -> list[str]:
    try:
        return box.path(EVENTS).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def test_readyz_503_while_logging_in_200_when_ready_503_during_a_zombie(box: Box) -> None:
    stack.install(
        box, stack.base_settings() | {"LOGIN_TIMEOUT": "120"}, sim={"TwoFactorFor": "paper"}
    )
    t0 = time.monotonic()
    box.run("systemctl", "start", "--no-block", "ibgwd.service")

    # Logging in: the 2FA prompt waits for the phone. Not ready, but alive.
    seen: list[tuple[int, dict[str, Any]]] = []

    def waiting_for_2fa() -> bool:
        seen.append(curl(box, "/readyz"))
        return seen[-1][1].get("gateways") == {"paper": "waiting_2fa"}

    stack.wait_for(waiting_for_2fa, 60, "/readyz to show the 2FA prompt")
    code, body = seen[-1]
    assert code == 503 and body["status"] == "not ready", body
    assert body["reason"].startswith("waiting for 2FA approval")  # ", 3 min left"
    assert {c for c, b in seen if b} == {503}  # never ready before the login completed
    assert curl(box, "/livez") == (200, {"status": "ok"})

    box.path(f"{STATE}/settings/sim-approve-2fa").touch()
    stack.wait_for(lambda: curl(box, "/readyz")[0] == 200, 60, "/readyz 200 after approval")
    print(f"time to /readyz 200 (2FA approved at once): {time.monotonic() - t0:.1f} s")
    code, body = curl(box, "/readyz")
    assert (code, body) == (200, {"status": "ok", "gateways": {"paper": "ready"}})
    assert stack.show(box, "ibgwd.service", "ActiveState") == "active"  # READY=1 agrees
    assert stack.ib_async_client(box, 4004).ok
    # HEAD, as some load balancers probe: headers only.
    head = box.run("curl", "-sS", "-I", "--max-time", "10", f"{BASE}/readyz").stdout
    assert head.startswith("HTTP/1.0 200") and "application/json" in head

    # A zombie: the next gateway start opens the API port but never answers the handshake.
    stack.write_sim_conf(box, {"Scenario": "api_zombie"})
    before = len(events(box))
    box.run("busctl", "call", *DEST, "Restart", "sb", "paper", "true")
    stack.wait_for(
        lambda: (
            any(" event=api_open" in ln for ln in events(box)[before:])
            and any("scenario=api_zombie" in ln for ln in events(box)[before:])
        ),
        WAIT_S,
        "the zombie gateway to open its API port",
    )
    zombie_at = len(events(box))
    answers = []
    for _ in range(6):  # a few probe intervals while the zombie holds the port
        answers.append((curl(box, "/readyz"), curl(box, "/livez")))
        time.sleep(1)
    assert " event=api_client_connected " not in "\n".join(events(box)[zombie_at:])
    for (ready_code, ready_body), live in answers:
        assert ready_code == 503 and ready_body["gateways"]["paper"] != "ready", ready_body
        assert live == (200, {"status": "ok"})
    print("readyz during the zombie:", sorted({a[0][1]["reason"] for a in answers}))

    # Heal: a gateway that answers again (ibgwd would restart the zombie itself after
    # LOGIN_TIMEOUT; a Restart now keeps the test short).
    stack.write_sim_conf(box, {"Scenario": "ok"})
    box.run("busctl", "call", *DEST, "Restart", "sb", "paper", "true")
    stack.wait_for(lambda: curl(box, "/readyz")[0] == 200, WAIT_S, "/readyz 200 after the zombie")
    assert curl(box, "/livez") == (200, {"status": "ok"})


def test_livez_fails_when_ibgwd_is_frozen_and_recovers_when_it_runs_again(box: Box) -> None:
    # SIGSTOP freezes ibgwd's process (main loop and HTTP threads): curl times out, as a
    # Kubernetes liveness probe would. A loop that is stuck while the HTTP thread still answers
    # is covered by tests/integration/test_metrics_health_http.py.
    stack.install(box, stack.base_settings())
    stack.start(box)
    assert curl(box, "/livez") == (200, {"status": "ok"})
    pid = stack.show(box, "ibgwd.service", "MainPID")
    box.run("kill", "-STOP", pid)
    try:
        r = box.run("curl", "-sS", "--max-time", "5", f"{BASE}/livez", check=False)
        assert r.returncode == 28, (r.returncode, r.stdout)  # curl: operation timed out
    finally:
        box.run("kill", "-CONT", pid)
    stack.wait_for(lambda: curl(box, "/livez")[0] == 200, 30, "/livez after SIGCONT")
