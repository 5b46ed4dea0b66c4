"""`ibgateway_process_*` describe the Gateway's JVM, not IBC's launcher script (issue 20).

The IBC unit's main process is ibcstart.sh, which keeps running around Java (IBC's
resources/scripts/ibcstart.sh runs java as a child in its restart loop); the simulated launcher
does the same with a separate "java" child (ibgwd_sim/ibcstart.py). A soft restart relaunches
Java under the same launcher, so the series must follow the new child.
"""

from __future__ import annotations

import pytest
import stack
from harness import Box

pytestmark = pytest.mark.system

IBC = "ibgwd-default-ibc-paper.service"
START = 'ibgateway_process_start_time_seconds{mode="paper"}'


def start_time(box: Box, pid: int) -> float:
    """What prometheus_client's ProcessCollector computes: btime + starttime / CLK_TCK."""
    btime = next(
        float(line.split()[1])
        for line in box.path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    stat = box.path(f"/proc/{pid}/stat").read_text()
    ticks = int(box.run("getconf", "CLK_TCK").stdout)
    return btime + float(stat[stat.rindex(")") + 2 :].split()[19]) / ticks


def metric(box: Box, name: str) -> float | None:
    for line in stack.metrics(box).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def children(box: Box, pid: int) -> list[int]:
    r = box.run("pgrep", "-P", str(pid), check=False)
    return [int(p) for p in r.stdout.split()]


def test_process_metrics_are_the_jvms_and_follow_it_across_a_soft_restart(box: Box) -> None:
    stack.install(box, stack.base_settings())
    stack.start(box)
    launcher = int(stack.show(box, IBC, "MainPID"))
    (jvm,) = children(box, launcher)
    assert "ibgwd_sim.gateway" in box.path(f"/proc/{jvm}/cmdline").read_text()
    assert start_time(box, launcher) != start_time(box, jvm)  # tells the two apart
    assert metric(box, START) == pytest.approx(start_time(box, jvm), abs=1e-3)
    rss = metric(box, 'ibgateway_process_resident_memory_bytes{mode="paper"}')
    assert rss is not None and rss > 0

    box.run(
        "busctl",
        "call",
        "org.ibgwd.Gateway1.default",
        "/org/ibgwd/Gateway1",
        "org.ibgwd.Gateway1.Manager",
        "Restart",
        "sb",
        "paper",
        "false",
    )
    stack.wait_for(lambda: [p for p in children(box, launcher) if p != jvm] != [], 60, "a new JVM")
    stack.wait_for(
        lambda: stack.show(box, "ibgwd.service", "StatusText").startswith("ready"),
        60,
        "ready again",
    )
    assert int(stack.show(box, IBC, "MainPID")) == launcher  # same launcher, new Java
    (new_jvm,) = children(box, launcher)
    assert new_jvm != jvm
    assert metric(box, START) == pytest.approx(start_time(box, new_jvm), abs=1e-3)
