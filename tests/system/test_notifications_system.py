"""Notifications under real systemd: a webhook receiver in the box gets the events in order,
and NOTIFY_COMMAND runs as a unit with the event in its environment."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

UNIT = "ibgwd.service"
PORT = 8765
RECEIVED = "/run/webhook/received.jsonl"
SETTINGS_DIR = "/var/lib/ibgwd/default/settings"
COMMAND_LOG = "/var/lib/ibgwd/default/home/notify-command.log"
WRONG = "not-the-password-42"  # test value: a wrong IB password

RECEIVER = f"""
import http.server, json, os
os.umask(0o077)  # what it records holds the URL's token: private, like a real receiver's log
os.makedirs("/run/webhook", exist_ok=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open("{RECEIVED}", "ab") as f:
            f.write(json.dumps({{"path": self.path, "type": self.headers["Content-Type"],
                                 "body": body.decode()}}).encode() + b"\\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", {PORT}), H).serve_forever()
"""


def received(box: Box) -> list[dict[str, object]]:
    path = box.path(RECEIVED)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        assert entry["type"] == "application/json"
        assert entry["path"] == "/hook?token=abc"
        out.append(json.loads(entry["body"]))
    return out


# Announcements of the Gateway's schedule come whenever the schedule is known; the order of
# the events that need a human is what these tests check.
SCHEDULE = {"restart_scheduled"}


def events(box: Box) -> list[str]:
    return [str(e["event"]) for e in received(box) if e["event"] not in SCHEDULE]


def wait_events(box: Box, wanted: list[str], timeout: float) -> list[str]:
    """Wait until `wanted` appears as a prefix of the events received; returns all of them."""
    try:
        stack.wait_for(lambda: events(box)[: len(wanted)] == wanted, timeout, f"webhook {wanted}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; received: {[e['event'] for e in received(box)]}") from None
    return events(box)


def start_with(box: Box, settings: dict[str, str], sim: dict[str, str]) -> None:
    box.run("systemctl", "stop", UNIT, check=False)
    box.run("systemctl", "reset-failed", UNIT, check=False)
    box.path(RECEIVED).unlink(missing_ok=True)
    stack.write_conf(box, "/etc/ibgwd/ibgwd.conf", settings)
    stack.write_sim_conf(box, sim)
    box.run("systemctl", "start", "--no-block", UNIT)


@pytest.fixture
def notified(box: Box) -> Iterator[tuple[Box, dict[str, str]]]:
    box.path("/usr/local/lib/webhook.py").write_text(RECEIVER, encoding="utf-8")
    box.run(
        "systemd-run", "--unit=webhook", "--quiet", "/usr/bin/python3", "/usr/local/lib/webhook.py"
    )
    settings = stack.base_settings() | {
        "NOTIFY_URL": f"http://127.0.0.1:{PORT}/hook?token=abc",
        "NOTIFY_TOPIC": "ibgwd-test",
        "NOTIFY_COMMAND": f'echo "$IBGWD_EVENT $IBGWD_MODE $IBGWD_STATE" >> {COMMAND_LOG}',
        "NOTIFY_AFTER": "0",
    }
    stack.install(box, settings)
    yield box, settings
    box.run("systemctl", "stop", UNIT, check=False)


def test_login_with_2fa_approval_then_2fa_expiry_then_wrong_password(
    notified: tuple[Box, dict[str, str]],
) -> None:
    box, settings = notified
    accept = {"AcceptUser": stack.DEMO_USER, "AcceptPassword": stack.DEMO_PASSWORD}

    # 1. A login that needs 2FA: the prompt (with its deadline) comes first, then ready.
    start_with(box, settings, {"Scenario": "twofa_pending", "TwoFactorFor": "paper"} | accept)
    got = wait_events(box, ["twofa_prompt"], 90)
    prompt = next(e for e in received(box) if e["event"] == "twofa_prompt")
    assert prompt["mode"] == "paper" and prompt["topic"] == "ibgwd-test"
    assert float(str(prompt["deadline_timestamp"])) > float(str(prompt["timestamp"]))
    assert "IBKR Mobile" in str(prompt["message"])
    box.path(f"{SETTINGS_DIR}/sim-approve-2fa").write_text("", encoding="utf-8")
    got = wait_events(box, ["twofa_prompt", "ready"], 90)
    assert got == ["twofa_prompt", "ready"]
    # NOTIFY_COMMAND ran as a unit of the instance, the event in its environment
    stack.wait_for(lambda: box.path(COMMAND_LOG).exists(), 30, "NOTIFY_COMMAND output")

    def command_lines() -> list[str]:
        lines = box.path(COMMAND_LOG).read_text().splitlines()
        return [line for line in lines if line.split()[0] not in SCHEDULE]

    stack.wait_for(
        lambda: command_lines()[:2] == ["twofa_prompt paper waiting_2fa", "ready paper ready"],
        30,
        "NOTIFY_COMMAND lines",
    )
    journal = box.run(
        "journalctl", "--no-pager", "-o", "cat", "-u", "ibgwd-default-notify-*"
    ).stdout
    assert "twofa_prompt paper" not in journal  # the command's output went to its file

    # ibgwdctl notify-test: the admin checks the path to the phone; it reports the delivery.
    r = box.run("/usr/bin/ibgwdctl", "notify-test", check=False)
    assert r.returncode == 0, r.stderr
    assert "delivered: NOTIFY_URL: http://127.0.0.1:8765/… accepted it (HTTP 200)" in r.stdout
    assert "NOTIFY_COMMAND started as ibgwd-default-notify-" in r.stdout
    assert events(box)[-1] == "test"
    assert box.run("/usr/bin/ibgwdctl", "notify-test", user="nobody", check=False).returncode == 77

    # 2. The prompt is not approved: the expiry follows the prompt.
    start_with(
        box,
        settings,
        {"Scenario": "twofa_timeout", "TwoFactorFor": "paper", "TwoFactorDialogSeconds": "3"}
        | accept,
    )
    got = wait_events(box, ["twofa_prompt", "twofa_expired"], 120)
    assert "ready" not in got[:2]

    # 3. A wrong password: the refused login is reported once, and ibgwd stops trying.
    start_with(
        box,
        settings | {"TWS_PASSWORD_PAPER": WRONG},
        {"Scenario": "ok"} | accept,
    )
    got = wait_events(box, ["login_failed"], 90)
    failed = next(e for e in received(box) if e["event"] == "login_failed")
    assert failed["state"] == "login_failed" and "TWS_PASSWORD" in str(failed["message"])
    time.sleep(10)  # a retry loop would report again
    got = events(box)
    assert got.count("login_failed") == 1 and "ready" not in got

    # No secret in any payload, nor in the command's environment (unit properties).
    bodies = json.dumps(received(box))
    for secret in (stack.DEMO_PASSWORD, WRONG, "token=abc"):
        assert secret not in bodies
    stack.assert_no_secret_leaks(box, [stack.DEMO_PASSWORD, WRONG, "token=abc"])
