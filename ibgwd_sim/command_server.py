"""IBC's command server: line-oriented TCP, access control, and IBC's replies to each command."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ibgwd_sim.output import Console, EventLog


class CommandTarget(Protocol):
    """What the commands act on: the simulated gateway."""

    @property
    def stalled(self) -> bool: ...

    @property
    def logged_in(self) -> bool: ...

    def stop(self) -> None: ...

    def restart(self, pause: bool) -> datetime: ...

    def reconnect(self, what: str) -> None: ...


@dataclass(frozen=True)
class CommandServerOptions:
    port: int
    bind_address: str = ""
    control_from: tuple[str, ...] = ()
    prompt: str = ""
    suppress_info: bool = True


def restart_clock(at: datetime) -> str:
    """IBC's ``hh:mm AM`` format for the RESTART/PAUSE time."""
    return at.strftime("%I:%M %p")


class CommandServer:
    def __init__(
        self,
        options: CommandServerOptions,
        target: CommandTarget,
        console: Console,
        events: EventLog,
    ) -> None:
        self._options = options
        self._target = target
        self._console = console
        self._events = events
        self._server: asyncio.Server | None = None
        self._stopping = False
        self._restarting = False

    async def start(self) -> None:
        port = self._options.port
        if port == 0:
            self._console.log("CommandServer is not started because the port is not configured")
            return
        self._console.log(f"CommandServer is starting with port {port}")
        host = self._options.bind_address or None
        try:
            self._server = await asyncio.start_server(self._serve, host, port, backlog=5)
        except OSError:
            self._console.log("CommandServer failed to create socket")
            return
        if host:
            self._console.log(f"CommandServer listening on address: {host} port: {port}")
        else:
            addresses = ",".join(sorted({str(s.getsockname()[0]) for s in self._server.sockets}))
            self._console.log(f"CommandServer listening on addresses: {addresses}; port: {port}")
        self._console.log("CommandServer started and is ready to accept commands")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _allowed(self, peer: str, local: str) -> bool:
        address = ipaddress.ip_address(peer.removeprefix("::ffff:"))
        if address.is_loopback or peer == local:
            return True
        names = {entry.strip().lower() for entry in self._options.control_from if entry.strip()}
        if peer.lower() in names:
            return True
        try:
            host = socket.gethostbyaddr(peer)[0].lower()
        except OSError:
            return False
        return host in names

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername")[0])
        local = str(writer.get_extra_info("sockname")[0])
        if not self._allowed(peer, local):
            self._console.log(f"CommandServer denied access to: /{peer}")
            writer.close()
            return
        try:
            if not self._options.suppress_info:
                writer.write(b"INFO IBC Command Server\n")
            self._prompt(writer)
            while line := await reader.readline():
                command = line.decode("latin-1").strip()
                if not command:
                    self._prompt(writer)
                elif self._target.stalled:
                    self._events.record("command_ignored", command=command.upper())
                elif not self._execute(command, writer):
                    break
                else:
                    self._prompt(writer)
                await writer.drain()
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _prompt(self, writer: asyncio.StreamWriter) -> None:
        if self._options.prompt:
            writer.write(self._options.prompt.encode("latin-1", "replace"))

    def _execute(self, command: str, writer: asyncio.StreamWriter) -> bool:
        """Run one command; False closes the channel."""
        self._console.log(f"CommandServer received command: {command}")
        verb = command.upper()
        self._events.record("command", command=verb)

        def reply(text: str) -> None:
            writer.write(text.encode("latin-1", "replace") + b"\n")

        def info(text: str) -> None:
            if not self._options.suppress_info:
                reply("INFO " + text)

        if verb == "EXIT":
            reply("OK Goodbye")
            return False
        if verb == "STOP":
            if self._stopping:
                reply("ERROR STOP already in progress")
                return True
            self._stopping = True
            info("Closing IBC")
            reply("OK Shutting down: STOP command")
            self._target.stop()
            return False
        if verb in ("RESTART", "PAUSE"):
            if self._restarting:
                reply(f"ERROR {verb} already in progress")
                return True
            if not self._target.logged_in:
                reply(f"ERROR {verb} is not possible before login has completed")
                return True
            self._restarting = True
            reply(f"OK {verb} in progress")
            at = self._target.restart(pause=verb == "PAUSE")
            reply(f"OK {verb} at {restart_clock(at)}")
            return False
        if verb == "ENABLEAPI":
            reply("ERROR ENABLEAPI is not valid for the IB Gateway")
            return True
        if verb in ("RECONNECTDATA", "RECONNECTACCOUNT"):
            self._target.reconnect(verb)
            reply("OK ")
            return True
        self._console.log(f"CommandServer: invalid command received: {command}")
        reply("ERROR Command invalid")
        return True
