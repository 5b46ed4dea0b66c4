"""Runs INSIDE a test box (Debian's /usr/bin/python3, stdlib only): looks for secrets.

The forms to look for (raw and escaped bytes, hex-encoded, one per line) come from a root-only
file or stdin, never argv: this script's own cmdline is scanned too. Output: one JSON line; it names
where a form was found and which form (its index), never the secret.

    leakscan.py proc FORMS                 one sweep of every process's cmdline and environ
    leakscan.py sample FORMS RESULT        sweep continuously until SIGTERM, then write RESULT
    leakscan.py files ROOT... < FORMS      every regular file this user can read under ROOTs,
                                           changed since the box booted (run it as nobody: what
                                           it finds is a world-readable copy)
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

GONE = (errno.ENOENT, errno.ESRCH)
MAX_FILE = 64 << 20


def load(path: str | None) -> list[bytes]:
    data = sys.stdin.buffer.read() if path is None else Path(path).read_bytes()
    return [bytes.fromhex(line.decode()) for line in data.split(b"\n") if line.strip()]


def find(forms: list[bytes], data: bytes) -> list[int]:
    return [i for i, form in enumerate(forms) if form in data]


def comm(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def sweep(forms: list[bytes], leaks: dict[str, dict[str, object]], unreadable: set[str]) -> int:
    """One pass over /proc; returns how many processes were read."""
    me = str(os.getpid())
    seen = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        seen += 1
        for name in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{name}", "rb") as f:
                    data = f.read()
            except OSError as exc:
                if exc.errno not in GONE:
                    unreadable.add(f"{pid} ({comm(pid)}) {name}: {exc.strerror}")
                continue
            hits = find(forms, data)
            if hits:
                # argv[0] says which program it was without printing the secret
                argv0 = (
                    data.split(b"\0", 1)[0].decode(errors="replace") if name == "cmdline" else ""
                )
                key = f"{pid} {name}"
                leaks[key] = {
                    "pid": pid,
                    "comm": comm(pid),
                    "file": name,
                    "forms": hits,
                    "argv0": argv0,
                }
    return seen


def proc(forms: list[bytes]) -> dict[str, object]:
    leaks: dict[str, dict[str, object]] = {}
    unreadable: set[str] = set()
    processes = sweep(forms, leaks, unreadable)
    return {"leaks": list(leaks.values()), "unreadable": sorted(unreadable), "processes": processes}


def sample(forms: list[bytes], result: str) -> None:
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    leaks: dict[str, dict[str, object]] = {}
    unreadable: set[str] = set()
    pids: set[str] = set()
    sweeps = 0
    longest_gap = 0.0
    start = last = time.monotonic()
    while not stop:
        sweep(forms, leaks, unreadable)
        pids.update(p for p in os.listdir("/proc") if p.isdigit())
        sweeps += 1
        now = time.monotonic()
        longest_gap = max(longest_gap, now - last)
        last = now
        time.sleep(0.005)
    out = {
        "leaks": list(leaks.values()),
        "unreadable": sorted(unreadable),
        "sweeps": sweeps,
        "seconds": round(time.monotonic() - start, 3),
        "longest_gap_s": round(longest_gap, 4),
        "distinct_pids": len(pids),
    }
    tmp = Path(result + ".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(result)


def boot_time() -> float:
    """When the box's systemd (its PID 1) started, on the realtime clock."""
    btime = next(
        float(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    stat = Path("/proc/1/stat").read_text()
    return btime + int(stat[stat.rindex(")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")


def files(forms: list[bytes], roots: list[str]) -> dict[str, object]:
    """Files written in the box (older ones come from the host's lower layer and cannot hold
    the test's secrets) that this user can read, and that hold a form."""
    since = boot_time() - 2
    found = []
    scanned = 0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or st.st_ctime < since:
                        continue
                    if st.st_size > MAX_FILE:
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue  # not readable by this user: not a world-readable copy
                scanned += 1
                hits = find(forms, data)
                if hits:
                    found.append(
                        {
                            "path": path,
                            "mode": oct(st.st_mode & 0o7777),
                            "uid": st.st_uid,
                            "forms": hits,
                        }
                    )
    return {"leaks": found, "scanned": scanned, "user": os.getuid()}


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    if cmd == "proc":
        out: object = proc(load(args[0]))
    elif cmd == "sample":
        sample(load(args[0]), args[1])
        return
    elif cmd == "files":
        out = files(load(None), args)
    else:
        raise SystemExit(f"unknown command {cmd!r}")
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
