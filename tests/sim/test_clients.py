"""Real TWS API clients from PyPI (ib_async, ib_insync, ibapi) connect and get the time.

Each client runs in its own interpreter (ib_async and ib_insync both import "eventkit").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ibgwd_sim.harness import SimRun
from ibgwd_sim.tws_api import SERVER_MAX_VERSION

from .conftest import Ports, StartGateway

IB_ASYNC_STYLE = """
import json, logging, sys, time
logging.basicConfig(stream=sys.stderr, level=logging.INFO)
from {lib} import IB
ib = IB()
t0 = time.monotonic()
ib.connect("127.0.0.1", {port}, clientId={client_id}, timeout=10)
connect_s = time.monotonic() - t0
now = ib.reqCurrentTime()
print(json.dumps({{"connect_s": connect_s, "accounts": ib.managedAccounts(),
                   "time": now.timestamp(), "version": ib.client.serverVersion()}}))
ib.disconnect()
"""

IBAPI = """
import json, threading, time
from ibapi.client import EClient
from ibapi.wrapper import EWrapper

class App(EWrapper, EClient):
    def __init__(self):
        EClient.__init__(self, self)
        self.ready = threading.Event()
        self.got_time = threading.Event()
        self.accounts = ""
        self.time = None
        self.codes = []
    def nextValidId(self, orderId):
        self.ready.set()
    def managedAccounts(self, accountsList):
        self.accounts = accountsList
    def currentTime(self, time_):
        self.time = time_
        self.got_time.set()
    def error(self, reqId, *args):
        self.codes.append([a for a in args if isinstance(a, int) and a >= 100][:1])

app = App()
t0 = time.monotonic()
app.connect("127.0.0.1", {port}, {client_id})
thread = threading.Thread(target=app.run, daemon=True)
thread.start()
assert app.ready.wait(10), "no nextValidId"
connect_s = time.monotonic() - t0
app.reqCurrentTime()
assert app.got_time.wait(10), "no currentTime"
print(json.dumps({{"connect_s": connect_s, "accounts": app.accounts.split(","),
                   "time": app.time, "version": app.serverVersion(), "codes": app.codes}}))
app.disconnect()
"""


def _client(script: str, **fmt: object) -> tuple[dict[str, object], str]:
    proc = subprocess.run(
        [sys.executable, "-c", script.format(**fmt)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture
def logged_in(start_gateway: StartGateway) -> SimRun:
    run = start_gateway()
    run.wait_for("Login has completed")
    return run


@pytest.mark.parametrize("lib", ["ib_async", "ib_insync"])
def test_ib_async_style_clients_connect_without_startup_timeouts(
    logged_in: SimRun, ports: Ports, lib: str
) -> None:
    result, log = _client(IB_ASYNC_STYLE, lib=lib, port=ports.api, client_id=11)
    assert result["accounts"] == ["DU1234567"]
    assert isinstance(result["time"], float) and result["time"] > 0
    assert result["version"] <= SERVER_MAX_VERSION  # type: ignore[operator]
    assert "timed out" not in log
    assert "Synchronization complete" in log
    print(f"{lib} connect_s={result['connect_s']:.4f}")


def test_ibapi_stays_on_text_protocol_and_gets_time(logged_in: SimRun, ports: Ports) -> None:
    result, _ = _client(IBAPI, port=ports.api, client_id=12)
    assert result["version"] == SERVER_MAX_VERSION  # ibapi offers v100..226, we answer 178
    assert result["accounts"] == ["DU1234567"]
    assert result["time"] > 0  # type: ignore[operator]
    assert [2104] in result["codes"]  # type: ignore[operator]
    print(f"ibapi connect_s={result['connect_s']:.4f}")


DUPLICATE = """
import json, socket, struct
def frame(*fields):
    body = b"".join(str(f).encode() + b"\\0" for f in fields)
    return struct.pack(">I", len(body)) + body
def read(s):
    size = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
    return s.recv(size, socket.MSG_WAITALL).split(b"\\0")[:-1]
def hello(s):
    s.sendall(b"API\\0" + struct.pack(">I", 9) + b"v157..178")
    return read(s)
a = socket.create_connection(("127.0.0.1", {port}), timeout=5)
hello(a)
a.sendall(frame(71, 2, 5, ""))
first = [read(a)[0].decode() for _ in range(2)]
b = socket.create_connection(("127.0.0.1", {port}), timeout=5)
hello(b)
b.sendall(frame(71, 2, 5, ""))
error = [f.decode() for f in read(b)]
closed = b.recv(1) == b""
print(json.dumps({{"first": first, "error": error, "closed": closed}}))
"""


def test_client_id_in_use_gets_326_and_close(logged_in: SimRun, ports: Ports) -> None:
    result, _ = _client(DUPLICATE, port=ports.api)
    assert result["first"] == ["15", "9"]
    assert result["error"][:4] == ["4", "2", "-1", "326"]
    assert "already in use" in result["error"][4]  # type: ignore[operator]
    assert result["closed"] is True


def test_api_port_is_closed_until_login_has_completed(
    start_gateway: StartGateway, ports: Ports
) -> None:
    from ibgwd_sim.harness import port_open

    run = start_gateway({"LoginSeconds": "3"})
    run.wait_for("Click button: Paper Log In")
    assert not port_open(ports.api)
    run.wait_for("Login has completed")
    assert port_open(ports.api)
