#!/usr/bin/python3 -P
"""The container's health check: ask ibgwd's /livez or /readyz on the metrics listener.

Installed in the image as /usr/lib/ibgwd-container/healthcheck and used by its HEALTHCHECK
(`healthcheck livez`); compose.yaml's example asks `healthcheck readyz`. Prints the endpoint's
JSON answer (what `docker inspect` / `podman inspect` show as the check's output) and exits 0
for 200, 1 otherwise, as HEALTHCHECK expects.

The address is the container's METRICS_ADDRESS (the image sets 0.0.0.0:9108); a wildcard
address is asked on loopback. With METRICS_ADDRESS empty (no listener) the check falls back to
systemd: livez = ibgwd.service is active or activating, readyz = it is active (READY=1 sent).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

from ibgwd.config.kinds import split_host_port

ENDPOINTS = ("livez", "readyz")
DEFAULT_ADDRESS = "127.0.0.1:9108"
TIMEOUT_S = 8.0  # /livez waits up to 3 s for ibgwd's loop; HEALTHCHECK --timeout is 10 s
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}
EX_USAGE = 64


def url(address: str, endpoint: str) -> str:
    host, port = split_host_port(address)
    host = WILDCARDS.get(host, host)
    return (
        f"http://[{host}]:{port}/{endpoint}" if ":" in host else f"http://{host}:{port}/{endpoint}"
    )


def ask(target: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(target, timeout=TIMEOUT_S) as response:
            return response.status == 200, response.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as e:
        return False, e.read().decode(errors="replace").strip()
    except OSError as e:
        return False, f"{target}: {getattr(e, 'reason', e)}"


def systemd_fallback(endpoint: str) -> tuple[bool, str]:
    r = subprocess.run(
        ["systemctl", "show", "-P", "ActiveState", "ibgwd.service"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    state = r.stdout.strip()
    good = {"active"} if endpoint == "readyz" else {"active", "activating", "reloading"}
    return state in good, f"METRICS_ADDRESS is empty; ibgwd.service is {state or 'unknown'}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ENDPOINTS:
        print(f"usage: healthcheck {{{'|'.join(ENDPOINTS)}}}", file=sys.stderr)
        return EX_USAGE
    address = os.environ.get("METRICS_ADDRESS", DEFAULT_ADDRESS).strip()
    if address:
        try:
            ok, text = ask(url(address, argv[0]))
        except ValueError as e:
            ok, text = False, f"METRICS_ADDRESS={address!r}: {e}"
    else:
        ok, text = systemd_fallback(argv[0])
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
