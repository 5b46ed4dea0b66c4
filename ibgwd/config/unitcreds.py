"""Credentials the instance's unit loads (LoadCredential[Encrypted]=, SetCredential[Encrypted]=),
as seen from a shell: `ibgwd check-config` counts them as present, like the daemon will.

Parsing `systemctl show` output is pure; reading the unit's properties and the plaintext
credential files is the small I/O part. An encrypted credential is only decrypted by systemd
when the unit starts: it counts as set (its value is not checked here).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ibgwd.config.sources import read_value_file

PROPERTIES = (
    "LoadCredential",
    "LoadCredentialEncrypted",
    "SetCredential",
    "SetCredentialEncrypted",
)
# Where systemd looks for `LoadCredential=NAME` without a path (systemd.exec(5)).
CREDSTORE = ("/etc/credstore", "/run/credstore", "/usr/local/lib/credstore", "/usr/lib/credstore")
CREDSTORE_ENCRYPTED = tuple(d + ".encrypted" for d in CREDSTORE)
ENCRYPTED_PLACEHOLDER = "<encrypted credential>"


@dataclass(frozen=True)
class UnitCredential:
    name: str
    source: str  # a path, "" (the credential store), or "inline" for SetCredential=
    encrypted: bool
    directive: str  # LoadCredential, LoadCredentialEncrypted, ...


def parse_show(text: str) -> list[UnitCredential]:
    """`systemctl show -p LoadCredential ...` output: `LoadCredential=name:path` lines; systemd
    also prints several entries on one line, separated by spaces; empty values mean none."""
    found: list[UnitCredential] = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or key not in PROPERTIES:
            continue
        for entry in value.split():
            name, _, source = entry.partition(":")
            if not name:
                continue
            if key.startswith("Set"):
                source = "inline"
            found.append(UnitCredential(name, source, key.endswith("Encrypted"), key))
    return found


def from_properties(props: Mapping[str, object]) -> list[UnitCredential]:
    """The unit's credential properties as read over D-Bus: a(ss) for Load*, a(say) for Set*."""
    found: list[UnitCredential] = []
    for key in PROPERTIES:
        for entry in props.get(key) or ():  # type: ignore[attr-defined]
            name, source = str(entry[0]), entry[1]
            if key.startswith("Set"):
                source = "inline"
            found.append(UnitCredential(name, str(source), key.endswith("Encrypted"), key))
    return found


def unit_credentials(service: str) -> list[UnitCredential]:
    """The credentials `service` loads, asked from systemd over D-Bus (`systemctl show`
    prints them only from systemd 254 on); empty when systemd is not reachable."""
    try:
        return from_properties(_dbus_properties(service))
    except Exception:  # no system bus, no systemd: fall back to systemctl's text
        pass
    argv = ["systemctl", "show", *(f"--property={p}" for p in PROPERTIES), "--", service]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return [c for c in parse_show(result.stdout) if c.name != "[unprintable]"]


def _dbus_properties(service: str) -> dict[str, object]:
    from dasbus.connection import SystemMessageBus
    from dasbus.typing import unwrap_variant

    bus = SystemMessageBus()
    try:
        manager = bus.get_proxy("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
        path = manager.LoadUnit(service)
        props = bus.get_proxy("org.freedesktop.systemd1", path, "org.freedesktop.DBus.Properties")
        out: dict[str, object] = {}
        for key in PROPERTIES:
            try:
                out[key] = unwrap_variant(props.Get("org.freedesktop.systemd1.Service", key))
            except Exception:  # an older systemd without SetCredentialEncrypted, ...
                out[key] = []
        return out
    finally:
        bus.disconnect()


def _credstore_path(name: str, encrypted: bool) -> Path | None:
    for directory in CREDSTORE_ENCRYPTED if encrypted else CREDSTORE:
        path = Path(directory) / name
        if path.exists():
            return path
    return None


@dataclass(frozen=True)
class Resolved:
    value: str  # the plaintext, or ENCRYPTED_PLACEHOLDER
    origin: str  # for --show and messages
    problem: str = ""  # why it cannot be used (missing file, unreadable)


def resolve(
    credentials: Iterable[UnitCredential], wanted: Mapping[str, str], service: str
) -> dict[str, Resolved]:
    """Setting name -> what the unit will put into $CREDENTIALS_DIRECTORY for it.

    `wanted` maps credential names (tws_password) to setting names (TWS_PASSWORD)."""
    out: dict[str, Resolved] = {}
    for cred in credentials:
        setting = wanted.get(cred.name)
        if setting is None:
            continue
        origin = f"credential {cred.name} ({cred.directive}= of {service})"
        if cred.source == "inline":
            # SetCredential= values are unit properties, readable by anyone: still, count them.
            out[setting] = Resolved(ENCRYPTED_PLACEHOLDER, origin)
            continue
        path = Path(cred.source) if cred.source.startswith("/") else None
        if path is None:
            path = _credstore_path(cred.source or cred.name, cred.encrypted)
        if path is None or not path.exists():
            where = cred.source or f"the credential store ({', '.join(CREDSTORE)})"
            out[setting] = Resolved("", origin, f"{cred.directive}= source not found: {where}")
            continue
        if cred.encrypted:
            out[setting] = Resolved(ENCRYPTED_PLACEHOLDER, origin)
            continue
        try:
            out[setting] = Resolved(read_value_file(str(path)), origin)
        except ValueError as exc:
            out[setting] = Resolved("", origin, f"{path}: {exc}")
    return out
