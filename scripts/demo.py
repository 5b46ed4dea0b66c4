"""Demo: ibgwd under real systemd (a throwaway box) with the simulated gateway; Ctrl-C ends it."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "system")]

import stack  # noqa: E402
from harness import Box  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", default="paper", choices=["paper", "live", "both"])
    parser.add_argument("--vnc-password", default="", help="enable VNC on 5900 with this password")
    parser.add_argument("--seconds", type=float, default=0, help="stop after N seconds (0 = wait)")
    args = parser.parse_args()
    settings = stack.base_settings() | {"TRADING_MODE": args.mode, "PROBE_INTERVAL": "10"}
    if args.vnc_password:
        settings["VNC_SERVER_PASSWORD"] = args.vnc_password
    box = Box.start("ibgwd-demo")
    try:
        print("booted a throwaway systemd box; installing ibgwd and the simulated gateway ...")
        stack.install(box, settings)
        t0 = time.monotonic()
        stack.start(box)
        print(f"systemctl start ibgwd returned after {time.monotonic() - t0:.1f} s (READY=1)\n")
        print(box.run("systemctl", "status", "--no-pager", "-n", "0", "ibgwd").stdout)
        print(box.run("ibgwdctl", "status").stdout)
        client = stack.ib_async_client(box, 4004 if args.mode != "live" else 4003)
        print(f"ib_async through the relay: {client.output}\n")
        print(
            "Endpoints inside the box: API 127.0.0.1:4001/4002, relay 4003/4004, "
            "metrics http://127.0.0.1:9108/metrics, VNC 5900 (if enabled),\n"
            "D-Bus org.ibgwd.Gateway1.default on the box's system bus.\n"
            f"Try: tests/box.sh exec {box.name} ibgwdctl status\n"
            f"     tests/box.sh exec {box.name} busctl introspect org.ibgwd.Gateway1.default "
            "/org/ibgwd/Gateway1\n"
            f"     tests/box.sh exec {box.name} journalctl -u ibgwd -f\n"
        )
        if args.seconds:
            time.sleep(args.seconds)
        else:
            print("Running. Press Ctrl-C to stop and remove the box.")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        box.stop()
        print("box removed")
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    raise SystemExit(main())
