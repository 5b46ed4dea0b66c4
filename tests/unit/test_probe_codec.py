"""TWS API codec and probes against a tiny in-test server speaking the handshake."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from ibgwd.probes import codec
from ibgwd.probes.api import Outcome, probe_full, probe_handshake


def test_hello_is_api_prefix_and_length_prefixed_version_range() -> None:
    assert codec.hello() == b"API\0" + struct.pack(">I", 9) + b"v157..178"


def test_frame_reader_yields_complete_messages_only() -> None:
    reader = codec.FrameReader()
    msg = codec.fields_message(49, 1, 1700000000)
    assert reader.feed(msg[:5]) == []
    assert reader.feed(msg[5:] + msg) == [["49", "1", "1700000000"]] * 2


@pytest.mark.parametrize("fields", [["178"], ["x", "t"], ["100", "t"], ["178", "t", "z"]])
def test_server_hello_outside_protocol_is_rejected(fields: list[str]) -> None:
    with pytest.raises(codec.ProtocolError):
        codec.parse_server_hello(fields)


def _serve(behaviour: str) -> Iterator[int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        reader = codec.FrameReader()
        with conn:
            data = conn.recv(4)
            assert data == b"API\0"
            if behaviour == "silent":
                stop.wait(5)
                return
            while not reader.feed(conn.recv(1024)):
                pass
            conn.sendall(codec.fields_message(178, "20261129 04:00:00 UTC"))
            while not stop.is_set():
                chunk = conn.recv(1024)
                if not chunk:
                    return
                for fields in reader.feed(chunk):
                    if fields[0] == "71" and behaviour == "busy":
                        conn.sendall(codec.fields_message(4, 2, -1, 326, "in use", ""))
                        return
                    if fields[0] == "71":
                        conn.sendall(codec.fields_message(15, 1, "DU1"))
                        conn.sendall(codec.fields_message(9, 1, 1))
                    if fields[0] == "49":
                        conn.sendall(codec.fields_message(49, 1, 1700000000))

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield port
    finally:
        stop.set()
        srv.close()


@pytest.fixture(params=["ok"])
def server(request: pytest.FixtureRequest) -> Iterator[int]:
    yield from _serve(request.param)


@pytest.mark.parametrize("server", ["ok"], indirect=True)
def test_handshake_and_full_probe_succeed_against_a_tws_api_peer(server: int) -> None:
    assert probe_handshake("127.0.0.1", server, 2).outcome is Outcome.OK
    result = probe_full("127.0.0.1", server, 999, 2)
    assert result.outcome is Outcome.OK and result.server_version == 178


@pytest.mark.parametrize("server", ["silent"], indirect=True)
def test_a_peer_that_accepts_but_never_answers_is_a_timeout(server: int) -> None:
    assert probe_handshake("127.0.0.1", server, 0.3).outcome is Outcome.TIMEOUT


@pytest.mark.parametrize("server", ["busy"], indirect=True)
def test_client_id_in_use_counts_as_alive(server: int) -> None:
    result = probe_full("127.0.0.1", server, 999, 2)
    assert result.outcome is Outcome.CLIENT_ID_BUSY and result.outcome.alive


def test_closed_port_is_refused() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert probe_handshake("127.0.0.1", port, 1).outcome is Outcome.REFUSED
