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

    def stop(self) -> None:
        """StopTask after the ack: exit at once before login, else close via the menu."""

    def create_pause_file(self) -> None: ...

    async def restart(self, verb: str) -> datetime:
        """RestartTask.restart: wait for the main window, set the restart time, return it."""

    def reconnect(self, what: str) -> bool:
        """False when the main window does not exist (the JVM is then on its way out)."""

    async def wait_main_window(self) -> None: ...


class SwitchLock:
    """IBC's one-way flag: set() succeeds once per JVM (RestartTask and StopTask)."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> bool:
        if self._set:
            return False
        self._set = True
        return True


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
        self._stop_lock = SwitchLock()  # StopTask._Running
        self._restart_lock = SwitchLock()  # RestartTask._Running, shared by RESTART and PAUSE
        self._channels: set[asyncio.Task[None]] = set()

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

    def shutdown(self) -> None:
        """CommandServer.shutdown(): close the listening socket; open channels live on."""
        if self._server is not None:
            self._console.log("CommandServer closing")
            self._server.close()
            self._server = None
            self._console.log("CommandServer is shutdown")

    async def close(self) -> None:
        """The JVM is gone: nothing of the server or its channels survives."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._channels):
            task.cancel()

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
        task = asyncio.current_task()
        if task is not None:
            self._channels.add(task)
        peer = str(writer.get_extra_info("peername")[0])
        local = str(writer.get_extra_info("sockname")[0])
        self._console.log(
            "CommandServer: ControlFrom setting = " + ",".join(self._options.control_from)
        )
        if not self._allowed(peer, local):
            self._console.log(f"CommandServer denied access to: /{peer}")
            writer.close()
            return
        self._console.log(f"CommandServer accepted connection from: /{peer}")
        try:
            if not self._options.suppress_info:
                writer.write(b"INFO IBC Command Server\n")
            while line := await reader.readline():
                command = line.decode("latin-1").strip()
                if not command:
                    self._prompt(writer)
                    await writer.drain()
                    continue
                if self._target.stalled:
                    self._events.record("command_ignored", command=command.upper())
                    continue
                self._console.log(f"CommandServer received command: {command}")
                self._events.record("command", command=command.upper())
                if not await self._execute(command, writer):
                    break
                self._prompt(writer)
                await writer.drain()
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._console.log("Closing command channel")
            writer.close()
            if task is not None:
                self._channels.discard(task)

    def _prompt(self, writer: asyncio.StreamWriter) -> None:
        if self._options.prompt:
            writer.write(self._options.prompt.encode("latin-1", "replace"))

    async def _execute(self, command: str, writer: asyncio.StreamWriter) -> bool:
        """Run one command (CommandDispatcher); False closes the channel."""
        verb = command.upper()

        def reply(text: str) -> None:
            if not writer.is_closing():
                writer.write(text.encode("latin-1", "replace") + b"\n")

        def info(text: str) -> None:
            if not self._options.suppress_info:
                reply("INFO " + text)

        if verb == "EXIT":
            reply("OK Goodbye")
            return False
        if verb == "STOP":
            if not self._stop_lock.set():
                self._console.log("STOP already in progress")
                reply("ERROR STOP already in progress")
                return False
            info("Closing IBC")
            reply("OK Shutting down: STOP command")
            await writer.drain()
            writer.close()
            self._target.stop()
            return False
        if verb in ("RESTART", "PAUSE"):
            pause = verb == "PAUSE"
            self._console.log(f"RestartTask: pauseOnly = {str(pause).lower()}")
            self._console.log(f"RestartTask: verb = {verb}")
            if not self._restart_lock.set():
                self._console.log(f"{verb} already in progress")
                reply(f"ERROR {verb} already in progress")
                return False
            if pause:
                info("Pausing TWS")
                self._target.create_pause_file()
            else:
                info("Restarting TWS")
            reply(f"OK {verb} in progress")
            await writer.drain()
            at = await self._target.restart(verb)  # blocks until the main window exists
            reply(f"OK {verb} at {restart_clock(at)}")
            return False
        if verb == "ENABLEAPI":
            reply("ERROR ENABLEAPI is not valid for the IB Gateway")
            return True
        if verb == "RECONNECTDATA":
            if not self._target.reconnect(verb):
                await asyncio.Event().wait()  # the dispatcher thread died; the JVM is exiting
            reply("OK ")
            return True
        if verb == "RECONNECTACCOUNT":
            await self._target.wait_main_window()
            self._target.reconnect(verb)
            reply("OK ")
            return True
        reply("ERROR Command invalid")
        self._console.error(f"CommandServer: invalid command received: {command}")
        return True
