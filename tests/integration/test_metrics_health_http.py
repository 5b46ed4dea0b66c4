"""/livez and /readyz over real HTTP on the metrics listener, with a real GLib main loop as
ibgwd runs one: JSON bodies and codes, HEAD, other methods refused, /metrics unchanged, and
/livez failing while the loop is stuck."""

from __future__ import annotations

import importlib.util
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
from gi.repository import GLib
from metrics_samples import StatusHolder, realistic_status

from ibgwd.metrics import (
    LOOP_RESPONSE_TIMEOUT_S,
    Health,
    ListenAddress,
    MetricsServer,
    build_registry,
    glib_loop_probe,
)
from ibgwd.status import State


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=LOOP_RESPONSE_TIMEOUT_S + 5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def loop() -> Iterator[GLib.MainLoop]:
    """The default-context main loop in a thread, as ibgwd's main thread runs it."""
    main = GLib.MainLoop()
    thread = threading.Thread(target=main.run, daemon=True)
    thread.start()
    yield main
    main.quit()
    thread.join(5)


@pytest.fixture
def holder() -> StatusHolder:
    return StatusHolder(realistic_status())


@pytest.fixture
def base(holder: StatusHolder, loop: GLib.MainLoop) -> Iterator[str]:
    health = Health(holder.get, glib_loop_probe())
    registry = build_registry(holder.get)
    with MetricsServer(registry, ListenAddress("127.0.0.1", 0), health) as srv:
        yield f"http://{srv.address}"


def test_ready_and_alive_answer_200_with_json(base: str) -> None:
    code, headers, body = get(f"{base}/readyz")
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"status": "ok", "gateways": {"live": "ready", "paper": "ready"}}
    code, _, body = get(f"{base}/livez")
    assert (code, json.loads(body)) == (200, {"status": "ok"})


def test_readyz_follows_the_published_snapshot(holder: StatusHolder, base: str) -> None:
    holder.current = realistic_status(api_up=False)
    holder.publish(status_text="live: API not answering; paper: API not answering")
    code, _, body = get(f"{base}/readyz")
    assert code == 503
    assert json.loads(body) == {
        "status": "not ready",
        "reason": "live: API not answering; paper: API not answering",
        "gateways": {"live": "degraded", "paper": "degraded"},
    }
    assert get(f"{base}/livez")[0] == 200  # a zombie API is not a reason to restart ibgwd
    holder.current = realistic_status()
    assert get(f"{base}/readyz")[0] == 200


def test_livez_fails_when_the_instance_failed(holder: StatusHolder, base: str) -> None:
    holder.publish(state=State.FAILED, ready=False, status_text="paper: failed")
    code, _, body = get(f"{base}/livez")
    assert (code, json.loads(body)) == (503, {"status": "failed", "reason": "paper: failed"})


def test_livez_fails_while_the_main_loop_is_stuck(base: str) -> None:
    release = threading.Event()
    entered = threading.Event()

    def stuck() -> bool:
        entered.set()
        release.wait(LOOP_RESPONSE_TIMEOUT_S + 10)
        return False

    GLib.idle_add(stuck)
    assert entered.wait(5)
    try:
        code, _, body = get(f"{base}/livez")
        assert code == 503 and "main loop did not respond" in json.loads(body)["reason"]
        assert get(f"{base}/readyz")[0] == 200  # readiness never waits for the loop
    finally:
        release.set()
    assert get(f"{base}/livez")[0] == 200


def test_head_has_no_body_and_other_methods_are_refused(base: str) -> None:
    code, headers, body = get(f"{base}/readyz", method="HEAD")
    assert (code, body) == (200, b"") and int(headers["Content-Length"]) > 0
    code, headers, body = get(f"{base}/livez", method="POST")
    assert code == 405 and headers["Allow"] == "GET, HEAD"


def test_metrics_is_still_served_beside_the_health_endpoints(base: str) -> None:
    code, _, body = get(f"{base}/metrics")
    assert code == 200 and b'ibgwd_api_up{mode="paper"} 1.0' in body


def test_without_health_the_paths_are_plain_metrics(holder: StatusHolder) -> None:
    # The listener without a Health object (tools, tests) keeps prometheus_client's behaviour.
    with MetricsServer(build_registry(holder.get), ListenAddress("127.0.0.1", 0)) as srv:
        code, _, body = get(f"http://{srv.address}/readyz")
    assert code == 200 and b"ibgwd_ready" in body


def test_stopping_is_not_ready(holder: StatusHolder, base: str) -> None:
    holder.current = replace(realistic_status(), state=State.STOPPING, status_text="stopping")
    code, _, body = get(f"{base}/readyz")
    assert code == 503 and json.loads(body)["reason"] == "stopping"


def _healthcheck_script() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "image" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("image_healthcheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_images_healthcheck_asks_the_endpoints_and_exits_0_or_1(
    holder: StatusHolder,
    loop: GLib.MainLoop,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = _healthcheck_script()
    assert script.url("0.0.0.0:9108", "livez") == "http://127.0.0.1:9108/livez"
    assert script.url("[::]:9108", "readyz") == "http://[::1]:9108/readyz"
    health = Health(holder.get, glib_loop_probe())
    with MetricsServer(build_registry(holder.get), ListenAddress("0.0.0.0", 0), health) as srv:
        monkeypatch.setenv("METRICS_ADDRESS", f"0.0.0.0:{srv.address.port}")
        assert script.main(["readyz"]) == 0
        holder.publish(ready=False, state=State.WAITING_2FA, status_text="waiting for 2FA approval")
        assert script.main(["readyz"]) == 1
        assert script.main(["livez"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[1])["reason"] == "waiting for 2FA approval"
    assert json.loads(out[2]) == {"status": "ok"}
    assert script.main(["readyz"]) == 1  # nothing listens any more: unhealthy, not a crash
    assert "Connection refused" in capsys.readouterr().out
    assert script.main(["status"]) == 64
