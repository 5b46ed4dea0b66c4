"""A small TWS API server: the handshake, startApi and the replies clients wait for at connect.

Text protocol only: the server version is min(SERVER_MAX_VERSION, client max), and 178 < 201,
so even ibapi (which offers up to 226) stays on NUL-separated text fields.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import struct
import time
from dataclasses import dataclass

from ibgwd_sim.output import EventLog

SERVER_MAX_VERSION = 178
MIN_SERVER_VER_ADVANCED_ORDER_REJECT = 166
MAX_FRAME = 16 * 1024 * 1024
READ_ONLY = 321  # "Error validating request" while the API is read-only (ib-controller#65)
READ_ONLY_TEXT = (
    "Error validating request.-'bN' : cause - The API interface is currently in Read-Only mode."
)
CLIENT_ID_IN_USE = (
    326,
    "Unable to connect as the client id is already in use. Retry with a unique client id.",
)
FARM_NOTICES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
ACCOUNT_VALUES = (
    ("AccountType", "INDIVIDUAL", ""),
    ("NetLiquidation", "1000000.00", "USD"),
    ("TotalCashValue", "1000000.00", "USD"),
)
_HELLO = re.compile(rb"^v(\d+)(?:\.\.(\d+))?")


@dataclass(frozen=True)
class ApiOptions:
    accounts: tuple[str, ...]
    handshake_delay_s: float = 0.0
    zombie: bool = False  # accept TCP, never answer the handshake


def negotiate(hello: bytes) -> int | None:
    """Server version for a ``v<min>..<max>`` offer, or None if we cannot serve the client."""
    m = _HELLO.match(hello)
    if not m:
        return None
    low = int(m.group(1))
    high = int(m.group(2) or m.group(1))
    version = min(SERVER_MAX_VERSION, high)
    return version if version >= low else None


def frame(fields: tuple[object, ...] | list[object]) -> bytes:
    payload = b"".join(str(f).encode("utf-8") + b"\0" for f in fields)
    return struct.pack(">I", len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    if size > MAX_FRAME:
        raise ConnectionError(f"frame of {size} bytes is too large")
    return await reader.readexactly(size)


class _Session:
    def __init__(self, version: int, writer: asyncio.StreamWriter) -> None:
        self.version = version
        self.writer = writer
        self.client_id: int | None = None
        self.next_order_id = 1

    def send(self, *fields: object) -> None:
        self.writer.write(frame(list(fields)))

    def error(self, req_id: int, code: int, text: str) -> None:
        if self.version >= MIN_SERVER_VER_ADVANCED_ORDER_REJECT:
            self.send(4, 2, req_id, code, text, "")
        else:
            self.send(4, 2, req_id, code, text)


class TwsApiServer:
    """Serves the API port while the simulated gateway is logged in."""

    def __init__(self, options: ApiOptions, events: EventLog) -> None:
        self._options = options
        self._events = events
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._client_ids: set[int] = set()
        self.read_only = True  # the Gateway's "Read-Only API" checkbox (ibg.xml readOnlyApi)
        self.allow_only_localhost = True  # "Allow connections from localhost only"

    async def start(self, host: str | None, port: int) -> None:
        """Listen; host None = every interface, as the real Gateway does (IBC issue 173)."""
        self._server = await asyncio.start_server(self._serve, host, port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for session in list(self._sessions):
            session.writer.close()

    def send_farm_notices(self) -> None:
        """What clients see after RECONNECTDATA: the farms report in again."""
        for session in self._sessions:
            if session.client_id is not None:
                for code, text in FARM_NOTICES:
                    session.error(-1, code, text)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session: _Session | None = None
        peer = str(writer.get_extra_info("peername")[0])
        if (
            self.allow_only_localhost
            and not ipaddress.ip_address(peer.removeprefix("::ffff:")).is_loopback
        ):
            self._events.record("api_client_refused", peer=peer)
            writer.close()
            return
        try:
            if await reader.readexactly(4) != b"API\0" or self._options.zombie:
                await reader.read()  # like a real gateway, wait for a proper hello forever
                return
            hello = await read_frame(reader)
            if self._options.handshake_delay_s:
                await asyncio.sleep(self._options.handshake_delay_s)
            version = negotiate(hello)
            if version is None:
                return
            writer.write(frame([version, time.strftime("%Y%m%d %H:%M:%S %Z")]))
            session = _Session(version, writer)
            self._sessions.add(session)
            while self._dispatch(session, (await read_frame(reader)).split(b"\0")[:-1]):
                await writer.drain()
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            if session is not None:
                self._sessions.discard(session)
                if session.client_id is not None:
                    self._client_ids.discard(session.client_id)
                    self._events.record("api_client_disconnected", client_id=session.client_id)
            writer.close()

    def _dispatch(self, s: _Session, fields: list[bytes]) -> bool:
        """Answer one request; False closes the connection."""
        if not fields:
            return True
        msg = int(fields[0])
        accounts = self._options.accounts
        if msg == 71:  # startApi: version, clientId[, optionalCapabilities]
            client_id = int(fields[2])
            if client_id in self._client_ids:
                s.error(-1, *CLIENT_ID_IN_USE)
                self._events.record("api_client_rejected", client_id=client_id, code=326)
                return False
            s.client_id = client_id
            self._client_ids.add(client_id)
            self._events.record("api_client_connected", client_id=client_id, version=s.version)
            s.send(15, 1, ",".join(accounts))
            s.send(9, 1, s.next_order_id)
            for code, text in FARM_NOTICES:
                s.error(-1, code, text)
        elif msg == 49:  # reqCurrentTime
            s.send(49, 1, int(time.time()))
        elif msg == 8:  # reqIds
            s.send(9, 1, s.next_order_id)
        elif msg == 17:  # reqManagedAccts
            s.send(15, 1, ",".join(accounts))
        elif msg == 61:  # reqPositions
            s.send(62, 1)
        elif msg == 5:  # reqOpenOrders
            s.send(53, 1)
        elif msg == 99:  # reqCompletedOrders: the end message has no version field
            s.send(102)
        elif msg == 6:  # reqAccountUpdates: version, subscribe, account
            if fields[2] == b"1":
                account = fields[3].decode() or (accounts[0] if accounts else "")
                for key, value, currency in ACCOUNT_VALUES:
                    s.send(6, 2, key, value, currency, account)
                s.send(8, 1, time.strftime("%H:%M"))
                s.send(54, 1, account)
        elif msg == 76:  # reqAccountUpdatesMulti: version, reqId, account, model, ledger
            s.send(74, 1, int(fields[2]))
        elif msg == 7:  # reqExecutions: version, reqId, filter...
            s.send(55, 1, int(fields[2]))
        elif msg == 3:  # placeOrder: orderId first (no version field from server version 145)
            order_id = int(fields[1])
            s.next_order_id = max(s.next_order_id, order_id + 1)
            if self.read_only:
                s.error(order_id, READ_ONLY, READ_ONLY_TEXT)
                self._events.record("api_order_rejected", order_id=order_id, code=READ_ONLY)
            else:
                # orderStatus: id, status, filled, remaining, avgFillPrice, permId, parentId,
                # lastFillPrice, clientId, whyHeld, mktCapPrice
                s.send(3, order_id, "PreSubmitted", 0, 0, 0, order_id, 0, 0, s.client_id, "", 0)
                self._events.record("api_order_accepted", order_id=order_id)
        return True
