"""Helpers to run the simulation from tests and the demo: Xvfb, ports, ini files, a runner."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ibgwd_sim.install import SimInstall
from ibgwd_sim.output import EVENTS_FILE
from ibgwd_sim.properties import escape_value

# The password every test logs in with: each character that java.util.Properties, a shell-like
# conffile or a KEY = VALUE file treats specially, a space inside, and non-ASCII (Latin-1 and
# beyond). No leading/trailing space: IBC trims setting values (DefaultSettings.getString).
TRICKY_PASSWORD = "Tr1cky #pw! a:b=c \\ d\u00e9\u20ac"


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def write_ini(path: Path, values: dict[str, str]) -> Path:
    """A config.ini written with Java-properties escaping (pure ASCII)."""
    lines = [f"{k}={escape_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    path.chmod(0o600)
    return path


def write_sim_conf(install: SimInstall, values: dict[str, str]) -> None:
    text = "".join(f"{k} = {v}\n" for k, v in values.items())
    install.sim_conf.write_text(text, encoding="utf-8")


class Xvfb:
    """A private Xvfb on a display number it picks itself (-displayfd)."""

    def __init__(self) -> None:
        read_fd, write_fd = os.pipe()
        self.proc = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                "1024x768x24",
                "-nolisten",
                "tcp",
            ],
            pass_fds=(write_fd,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        if not number:
            self.close()
            raise RuntimeError("Xvfb did not report a display number")
        self.display = f":{number}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class SimRun:
    """One ``ibcstart.sh`` process with its stdout collected line by line."""

    proc: subprocess.Popen[str]
    settings_path: Path
    lines: list[str] = field(default_factory=list)
    stderr: str = ""

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout_s: float = 15.0, count: int = 1) -> str:
        """The ``count``-th stdout line matching the regex; AssertionError on timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            hits = [ln for ln in list(self.lines) if regex.search(ln)]
            if len(hits) >= count:
                return hits[count - 1]
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} (x{count}); output:\n" + self.output)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def events(self) -> list[str]:
        try:
            return (self.settings_path / EVENTS_FILE).read_text().splitlines()
        except FileNotFoundError:
            return []

    def wait(self, timeout_s: float = 15.0) -> int:
        code = self.proc.wait(timeout_s)
        self._reader.join(5)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        return code

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def kill(self) -> None:
        """Last-resort cleanup: the script and every "java" it started (its process group,
        as systemd kills a unit's cgroup: IBC's loop may relaunch Java after a SIGTERM)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.proc.stderr:
            self.proc.stderr.close()

    def start_reader(self) -> None:
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()


def start(
    install: SimInstall,
    settings_path: Path,
    ini: Path,
    *,
    display: str | None,
    on2fatimeout: str = "exit",
    mode: str | None = None,
    extra_args: tuple[str, ...] = (),
) -> SimRun:
    """Launch ``ibcstart.sh`` exactly as ibgwd does (no --user/--pw)."""
    argv = [
        str(install.ibcstart),
        install.gateway_version,
        "-g",
        f"--tws-path={install.tws_path}",
        f"--tws-settings-path={settings_path}",
        f"--ibc-path={install.ibc_path}",
        f"--ibc-ini={ini}",
        f"--on2fatimeout={on2fatimeout}",
        *([f"--mode={mode}"] if mode else []),
        *extra_args,
    ]
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    if display is not None:
        env["DISPLAY"] = display
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # one process group per run, so kill() reaches every Java
    )
    run = SimRun(proc, settings_path)
    run.start_reader()
    return run
