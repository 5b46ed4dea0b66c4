"""Pure desired state: the units an instance should run, and how to converge what systemd runs.

ibgwd's children outlive ibgwd (a crash, `systemctl restart ibgwd`, an upgrade), so on start
the supervisor *adopts* the units it finds instead of starting new ones: each unit carries a
keyed digest of the spec it was started from (in its Description), and only units whose digest
differs from the desired one are replaced. The key keeps the digest of files holding a password
from being a guessable hash in a world-readable unit property.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass, replace

from ibgwd.config.model import Settings
from ibgwd.names import InstanceNames
from ibgwd.units import spec as specs
from ibgwd.units import tunnel
from ibgwd.units.spec import Paths, UnitSpec

DIGEST_CHARS = 16
_TAG = re.compile(r" \[spec ([0-9a-f]{16})\]$")


def static_specs(
    settings: Settings, names: InstanceNames, paths: Paths, digests: Mapping[str, str]
) -> dict[str, UnitSpec]:
    """Units that run for the whole life of the instance (relays start once the API answers)."""
    out = [specs.display_spec(settings, names)]
    out += [specs.ibc_spec(settings, g, names, paths) for g in settings.gateways]
    if settings.vnc_enabled:
        out.append(specs.vnc_spec(settings, names, paths))
    out += tunnel.tunnel_specs(settings, names, paths)
    return {s.component: replace(s, content_digest=digests.get(s.component, "")) for s in out}


def relay_specs(settings: Settings, names: InstanceNames) -> dict[str, UnitSpec]:
    if not settings.relay_enabled:
        return {}
    out = [specs.relay_spec(settings, g, names) for g in settings.gateways if g.relay_port]
    return {s.component: s for s in out}


def spec_digest(unit_spec: UnitSpec, key: bytes) -> str:
    """A keyed digest of everything the unit is started from, the content digest included."""
    data = repr(astuple(unit_spec)).encode()
    return hmac.new(key, data, hashlib.sha256).hexdigest()[:DIGEST_CHARS]


def tagged_description(unit_spec: UnitSpec, key: bytes) -> str:
    return f"{unit_spec.description} [spec {spec_digest(unit_spec, key)}]"


def digest_of(description: str) -> str:
    """The digest a unit was started with ("" for a unit not started by this ibgwd version)."""
    match = _TAG.search(description)
    return match.group(1) if match else ""


@dataclass(frozen=True)
class Observed:
    """A unit of the instance as systemd reports it."""

    name: str
    alive: bool
    digest: str


class Verdict(enum.Enum):
    ADOPT = "adopt"  # running as desired: keep it, touch nothing
    START = "start"  # desired, not running
    REPLACE = "replace"  # running from another spec: stop, then start
    STOP = "stop"  # running, no longer desired (a mode switched off, a relay not yet wanted)


@dataclass(frozen=True)
class Convergence:
    adopt: tuple[UnitSpec, ...]
    start: tuple[UnitSpec, ...]
    replace: tuple[UnitSpec, ...]
    stop: tuple[str, ...]  # unit names

    def verdict(self, component: str) -> Verdict | None:
        for verdict, group in (
            (Verdict.ADOPT, self.adopt),
            (Verdict.START, self.start),
            (Verdict.REPLACE, self.replace),
        ):
            if any(s.component == component for s in group):
                return verdict
        return None


def converge(
    wanted: Mapping[str, UnitSpec],
    optional: Mapping[str, UnitSpec],
    observed: Sequence[Observed],
    key: bytes,
) -> Convergence:
    """Compare desired and observed units.

    `wanted` must run; `optional` (relays, which start only once the API answers) are adopted
    when they run as desired *and* their gateway's IBC unit is adopted too (a relay in front of
    a Gateway that starts again would accept clients and drop them); otherwise a running one is
    stopped. They are never started here. Units that are not alive (failed, inactive but not yet
    collected) are not adopted.
    """
    seen = {o.name: o for o in observed}
    adopt: list[UnitSpec] = []
    start: list[UnitSpec] = []
    again: list[UnitSpec] = []
    stop: list[str] = []
    known: set[str] = set()
    for unit_spec in [*wanted.values(), *optional.values()]:
        known.add(unit_spec.name)
        o = seen.get(unit_spec.name)
        required = unit_spec.component in wanted
        behind = "ibc-" + unit_spec.component.removeprefix("relay-")
        gateway_kept = required or any(a.component == behind for a in adopt)
        if o is not None and o.alive and o.digest == spec_digest(unit_spec, key) and gateway_kept:
            adopt.append(unit_spec)
        elif o is not None and o.alive:
            if required:
                again.append(unit_spec)
            else:
                stop.append(unit_spec.name)
        elif required:
            start.append(unit_spec)
    stop += [o.name for o in observed if o.name not in known and o.alive]
    return Convergence(tuple(adopt), tuple(start), tuple(again), tuple(stop))


class StopKind(enum.Enum):
    """What a SIGTERM of ibgwd means for the IB session (docs/decisions.md)."""

    DETACH = "detach"  # ibgwd restarts (restart job, upgrade): the children keep running
    STOP = "stop"  # an admin stops ibgwd: IBC STOP first, then every child
    PAUSE = "pause"  # the system shuts down: IBC PAUSE keeps the restart token, then every child


RESTART_JOBS = frozenset({"restart", "try-restart"})


def stop_kind(job_type: str | None, system_state: str, shutdown_action: str) -> StopKind:
    """Decide from systemd's view at the time of the SIGTERM.

    `job_type` is the job systemd runs on ibgwd's own unit ("" for none, None when not run by
    systemd). A shutdown wins over the job type: every unit gets a stop job then. A SIGTERM
    without a job (`kill`, `systemctl kill`) is an explicit request to end it all: STOP.
    """
    if job_type is None:
        return StopKind.STOP
    if system_state == "stopping":
        return StopKind.PAUSE if shutdown_action == "pause" else StopKind.STOP
    if job_type in RESTART_JOBS:
        return StopKind.DETACH
    return StopKind.STOP
