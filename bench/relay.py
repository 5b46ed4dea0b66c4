"""Relay benchmark: ibgwd's deployed socat relay vs a direct connection vs the old image's socat.

Runs on the host, loopback only. A C echo backend (bench/c/echosrv.c) plays the gateway, a C
client (bench/c/rtclient.c) drives it. Targets rotate within every repetition and ratios are
taken against the other targets of the same repetition. Relay CPU comes from a cgroup-v1
``cpuacct`` group per relay (which also holds socat's forked children), or from
/proc/PID/stat of every socat process when cpuacct is not mounted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cbuild import Tools
from bench.stats import median, ratio, spread
from ibgwd.config import validate
from ibgwd.names import InstanceNames
from ibgwd.units.spec import relay_spec

log = logging.getLogger(__name__)

CPUACCT = Path("/sys/fs/cgroup/cpuacct")
TARGETS = ("direct", "plain_socat", "ibgwd_relay")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class RelayParams:
    reps: int
    lat_n: int  # 64-byte round trips per repetition
    split_n: int  # split-message samples per repetition and direction
    conc_ms: int  # duration of the 32-connection run per repetition
    conns: int = 32


FULL = RelayParams(reps=5, lat_n=10000, split_n=300, conc_ms=2000)
QUICK = RelayParams(reps=1, lat_n=300, split_n=30, conc_ms=200)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ibgwd_relay_argv(api_port: int, relay_port: int) -> tuple[str, ...]:
    """The relay command exactly as ibgwd deploys it (from ibgwd.units.spec.relay_spec)."""
    values = {
        "TWS_USERID": "bench",
        "TWS_PASSWORD": "bench",  # never used: only the relay spec is built
        "TRADING_MODE": "paper",
        "IB_GATEWAY_VERSION": "10.37.1o",
        "API_PORT_PAPER": str(api_port),
        "RELAY_PORT_PAPER": str(relay_port),
        "RELAY_BIND_ADDRESS": "127.0.0.1",
    }
    settings, problems = validate.build("default", values, installed_versions=())
    if problems:
        raise RuntimeError(f"relay settings rejected: {problems}")
    gateway = next(g for g in settings.gateways if g.relay_port)
    return relay_spec(settings, gateway, InstanceNames("default")).exec_start


def plain_socat_argv(api_port: int, relay_port: int) -> tuple[str, ...]:
    """The old image's relay (`socat TCP-LISTEN:4004,fork TCP:127.0.0.1:4002`), on loopback."""
    return (
        "/usr/bin/socat",
        f"TCP-LISTEN:{relay_port},fork,bind=127.0.0.1",
        f"TCP:127.0.0.1:{api_port}",
    )


class CpuMeter:
    """CPU seconds used by a process and its descendants (cgroup-v1 cpuacct, else /proc)."""

    def __init__(self, name: str, pid: int) -> None:
        self._pid = pid
        self._group: Path | None = None
        if (CPUACCT / "cpuacct.usage").exists() and os.geteuid() == 0:
            group = CPUACCT / f"ibgwd-bench-{os.getpid()}-{name}"
            group.mkdir(exist_ok=True)
            (group / "cgroup.procs").write_text(str(pid))
            self._group = group
        self.method = "cgroup-v1 cpuacct" if self._group else "/proc/PID/stat of all socat"

    def seconds(self) -> float:
        if self._group:
            return int((self._group / "cpuacct.usage").read_text()) / 1e9
        return sum(_proc_cpu(pid) for pid in [self._pid, *_children(self._pid)])

    def close(self) -> None:
        if self._group:
            for _ in range(50):
                with contextlib.suppress(OSError):
                    self._group.rmdir()
                    return
                time.sleep(0.1)


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / CLK_TCK


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


@dataclass
class Target:
    name: str
    port: int
    argv: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    cpu: CpuMeter | None = None


def _wait_listening(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def running_targets(tools: Tools) -> Iterator[dict[str, Target]]:
    """The echo backend plus both relays in front of it; everything is stopped on exit."""
    procs: list[subprocess.Popen[bytes]] = []
    meters: list[CpuMeter] = []
    with tempfile.TemporaryDirectory(prefix="ibgwd-bench-") as tmp:
        portfile = Path(tmp) / "port"
        try:
            backend = subprocess.Popen([str(tools.echosrv), str(portfile)], start_new_session=True)
            procs.append(backend)
            deadline = time.monotonic() + 5
            while not portfile.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            api = int(portfile.read_text())
            targets = {"direct": Target("direct", api)}
            for name, make in (
                ("plain_socat", plain_socat_argv),
                ("ibgwd_relay", ibgwd_relay_argv),
            ):
                port = free_port()
                argv = make(api, port)
                proc = subprocess.Popen(argv, start_new_session=True)
                procs.append(proc)
                meter = CpuMeter(name, proc.pid)
                meters.append(meter)
                targets[name] = Target(name, port, argv, proc, meter)
                _wait_listening(port)
            yield targets
        finally:
            for proc in reversed(procs):
                _stop(proc)
            for meter in meters:
                meter.close()


def _client(tools: Tools, *args: object) -> dict[str, Any]:
    out = subprocess.run(
        [str(tools.rtclient), *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _measure(tools: Tools, target: Target, test: str, p: RelayParams) -> dict[str, Any]:
    before = target.cpu.seconds() if target.cpu else None
    if test == "lat":
        r = _client(tools, "lat", target.port, p.lat_n, 64)
    elif test in ("split", "rsplit"):
        r = _client(tools, test, target.port, p.split_n, 60)
    else:
        r = _client(tools, "conc", target.port, p.conns, p.conc_ms, 64)
    if target.cpu and before is not None:
        used = target.cpu.seconds() - before
        if test == "lat":
            r["relay_cpu_ms_per_10k"] = used * 1e3 * 10000 / p.lat_n
        r["relay_cpu_s"] = used
    return r


def run(tools: Tools, p: RelayParams) -> dict[str, Any]:
    """All relay measurements, interleaved; returns raw per-repetition samples and a summary."""
    tests = ("lat", "split", "rsplit", "conc")
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {t: {x: [] for x in TARGETS} for t in tests}
    with running_targets(tools) as targets:
        commands = {name: list(t.argv) for name, t in targets.items()}
        method = next((t.cpu.method for t in targets.values() if t.cpu), "-")
        for rep in range(p.reps):
            order = TARGETS[rep % len(TARGETS) :] + TARGETS[: rep % len(TARGETS)]
            for test in tests:
                for name in order:
                    raw[test][name].append(_measure(tools, targets[name], test, p))
            log.info("event=relay_rep_done rep=%d of=%d", rep + 1, p.reps)
    return {
        "params": vars(p),
        "commands": commands,
        "cpu_method": method,
        "raw": raw,
        "summary": summarize(raw),
    }


def _per_rep_ratio(
    raw: dict[str, list[dict[str, Any]]], key: str, target: str, baseline: str
) -> float | None:
    ratios = [
        r
        for a, b in zip(raw[target], raw[baseline], strict=True)
        if (r := ratio(a.get(key), b.get(key))) is not None
    ]
    return median(ratios)


def summarize(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in TARGETS:
        lat = raw["lat"][name]
        entry: dict[str, Any] = {
            "p50_us": spread([r["p50_us"] for r in lat]),
            "p99_us": spread([r["p99_us"] for r in lat]),
            "stalls_client_split": sum(r["over_10ms"] for r in raw["split"][name]),
            "stalls_gateway_split": sum(r["over_10ms"] for r in raw["rsplit"][name]),
            "split_samples": sum(r["n"] for r in raw["split"][name]),
            "split_p99_us": spread([r["p99_us"] for r in raw["split"][name]]),
            "rsplit_p99_us": spread([r["p99_us"] for r in raw["rsplit"][name]]),
            "conc_rt_per_s": spread([r["rt_per_s"] for r in raw["conc"][name]]),
        }
        cpu = [r["relay_cpu_ms_per_10k"] for r in lat if "relay_cpu_ms_per_10k" in r]
        entry["relay_cpu_ms_per_10k"] = spread(cpu) if cpu else None
        out[name] = entry
    ratios: dict[str, Any] = {}
    for baseline in ("direct", "plain_socat"):
        ratios[f"ibgwd_vs_{baseline}"] = {
            "p50": _per_rep_ratio(raw["lat"], "p50_us", "ibgwd_relay", baseline),
            "p99": _per_rep_ratio(raw["lat"], "p99_us", "ibgwd_relay", baseline),
            "conc": _per_rep_ratio(raw["conc"], "rt_per_s", "ibgwd_relay", baseline),
        }
    ratios["ibgwd_vs_plain_socat"]["cpu"] = _per_rep_ratio(
        raw["lat"], "relay_cpu_ms_per_10k", "ibgwd_relay", "plain_socat"
    )
    out["ratios"] = ratios
    return out


def quick_check(argv: Sequence[str]) -> None:
    """Debug helper: `python -m bench.relay` runs the quick relay benchmark and prints JSON."""
    from bench.cbuild import build

    del argv
    print(json.dumps(run(build(), QUICK)["summary"], indent=1))


if __name__ == "__main__":
    import sys

    logging.basicConfig(level=logging.INFO)
    quick_check(sys.argv[1:])
