"""Command line for humans: start, enter, list, stop and garbage-collect boxes (tests/box.sh)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from harness.box import Box, BoxError, BoxState, gc, list_boxes, teardown
from harness.rootfs import debian_rootfs

DEFAULT_CACHE = Path("/var/tmp/ibgwd-box-cache")


def parse_bind(spec: str) -> tuple[str, str, bool]:
    parts = spec.split(":")
    if len(parts) == 2:
        return (os.path.abspath(parts[0]), parts[1], False)
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        return (os.path.abspath(parts[0]), parts[1], parts[2] == "ro")
    raise argparse.ArgumentTypeError(f"--bind {spec!r}: expected HOST:BOX or HOST:BOX:ro")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="box.sh", description="throwaway boxes with real systemd")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="boot a box; prints its systemd pid")
    s.add_argument("name")
    s.add_argument("--lower", type=Path, help="rootfs for the overlay's lower layer (default /)")
    s.add_argument(
        "--debian", action="store_true", help=f"lower = cached debootstrap root in {DEFAULT_CACHE}"
    )
    s.add_argument("--bind", type=parse_bind, action="append", default=[], metavar="H:B[:ro]")
    s.add_argument("--unmask", action="append", default=[], metavar="UNIT")
    for cmd, what in (("exec", "in the box"), ("hexec", "with box files on the host network")):
        e = sub.add_parser(cmd, help=f"run a command {what}")
        e.add_argument("--user", "-u")
        e.add_argument("name")
        e.add_argument("argv", nargs=argparse.REMAINDER)
    st = sub.add_parser("stop", help="power off and remove a box")
    st.add_argument("name")
    sub.add_parser("list", help="list boxes on this machine")
    sub.add_parser("gc", help="remove boxes whose owner or launcher died")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "start":
            lower = debian_rootfs(DEFAULT_CACHE) if args.debian else args.lower
            box = Box.start(
                args.name, lower=lower, binds=args.bind, unmask=args.unmask, owned=False
            )
            print(box.pid)
        elif args.cmd in ("exec", "hexec"):
            box = Box.attach(args.name)
            cmd = args.argv or ["/bin/bash"]
            argv_ = box.command(*cmd, user=args.user, network=args.cmd == "exec")
            env = box.environment(args.user, {"TERM": os.environ.get("TERM", "dumb")})
            os.execve(argv_[0], argv_, env)
        elif args.cmd == "stop":
            teardown(BoxState.load(args.name), None)
        elif args.cmd == "list":
            for s in list_boxes():
                up = "running" if s.launcher_alive() else "dead"
                owner = "manual" if s.owner_pid is None else f"owner={s.owner_pid}"
                age = int(time.time() - s.created)
                print(f"{s.name}\tpid={s.pid}\t{up}\t{owner}\tage={age}s")
        elif args.cmd == "gc":
            for name in gc():
                print(name)
    except BoxError as e:
        print(f"box.sh: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
