"""A real launcher-and-child process tree, like IBC's: a shell that keeps running around a child.

Metrics tests pass the launcher's pid where ibgwd passes the IBC unit's MainPID; the process
metrics must then describe the child, never the launcher.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class Tree:
    """``sh -c 'CHILD & wait'``: the shell is the launcher, ``child`` the one process under it."""

    def __init__(self, child: str = "sleep 3600") -> None:
        self._sh = subprocess.Popen(
            ["/bin/sh", "-c", f"{child} & wait"], start_new_session=True, stdin=subprocess.DEVNULL
        )
        self.launcher = self._sh.pid
        deadline = time.monotonic() + 10
        while not children(self.launcher):
            if time.monotonic() > deadline:
                raise RuntimeError("the launcher's child did not start")
            time.sleep(0.01)
        self.child = children(self.launcher)[0]

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.launcher, signal.SIGKILL)
        self._sh.wait()


_shared: Tree | None = None


def launcher() -> int:
    """The pid of one shared launcher (with its sleeping child) for the whole test run."""
    global _shared
    if _shared is None:
        _shared = Tree()
        atexit.register(_shared.close)
    return _shared.launcher
