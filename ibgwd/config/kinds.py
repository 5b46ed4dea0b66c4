"""Value kinds of settings: each parses one raw string and describes what it accepts."""

from __future__ import annotations

import ipaddress
import math
import re
import shlex
from dataclasses import dataclass
from typing import Protocol, TypeVar

T_co = TypeVar("T_co", covariant=True)


class Kind(Protocol[T_co]):
    """Parses a raw setting value; raises ValueError (message = detail) when it is not accepted."""

    @property
    def accepted(self) -> str: ...

    def parse(self, raw: str) -> T_co: ...


_YES = frozenset({"yes", "true"})
_NO = frozenset({"no", "false"})


@dataclass(frozen=True)
class Text:
    """Any text, kept exactly (no whitespace stripping: user ids and passwords need that)."""

    accepted: str = "any text"

    def parse(self, raw: str) -> str:
        return raw


@dataclass(frozen=True)
class Choice:
    """One word out of a fixed list, case-insensitive, returned in lower case."""

    choices: tuple[str, ...]
    allow_empty: bool = False

    @property
    def accepted(self) -> str:
        words = " | ".join(c for c in self.choices if c)
        return f"{words} or empty" if self.allow_empty else words

    def parse(self, raw: str) -> str:
        word = raw.strip().lower()
        if word in self.choices or (self.allow_empty and word == ""):
            return word
        raise ValueError("")


@dataclass(frozen=True)
class YesNo:
    """A boolean written yes/no (true/false also accepted, as IBC does)."""

    accepted: str = "yes | no"

    def parse(self, raw: str) -> bool:
        word = raw.strip().lower()
        if word in _YES:
            return True
        if word in _NO:
            return False
        raise ValueError("")


@dataclass(frozen=True)
class OptionalYesNo:
    """yes/no, or empty meaning "leave the Gateway's own setting unchanged"."""

    accepted: str = "yes | no | empty (leave the Gateway's setting unchanged)"

    def parse(self, raw: str) -> bool | None:
        if raw.strip() == "":
            return None
        return YesNo().parse(raw)


@dataclass(frozen=True)
class Integer:
    """A whole number within [low, high]."""

    low: int
    high: int
    unit: str = ""

    @property
    def accepted(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"a whole number from {self.low} to {self.high}{unit}"

    def parse(self, raw: str) -> int:
        text = raw.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,12}", text):
            raise ValueError("")
        value = int(text)
        if not self.low <= value <= self.high:
            raise ValueError("out of range")
        return value


@dataclass(frozen=True)
class OptionalInteger:
    """A whole number within [low, high], or empty (None)."""

    low: int
    high: int
    unit: str = ""

    @property
    def accepted(self) -> str:
        return Integer(self.low, self.high, self.unit).accepted + ", or empty"

    def parse(self, raw: str) -> int | None:
        if raw.strip() == "":
            return None
        return Integer(self.low, self.high, self.unit).parse(raw)


@dataclass(frozen=True)
class Seconds:
    """A duration in seconds (decimals allowed), at least `low`."""

    low: float
    high: float = 86400.0

    @property
    def accepted(self) -> str:
        return f"a number of seconds from {self.low:g} to {self.high:g}, e.g. 10 or 2.5"

    def parse(self, raw: str) -> float:
        text = raw.strip()
        if not re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,9})?", text):
            raise ValueError("")
        value = float(text)
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise ValueError("out of range")
        return value


_TIME12 = re.compile(r"(0?[1-9]|1[0-2]):([0-5][0-9]) ?([AaPp][Mm])")
_TIME24 = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True)
class Time12:
    """IBC's `hh:mm AM|PM`, or empty (off). Normalised to `hh:mm AM`."""

    accepted: str = "hh:mm AM or hh:mm PM (12-hour clock, no quotes), e.g. 11:45 PM, or empty"

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if text == "":
            return ""
        match = _TIME12.fullmatch(text)
        if not match:
            detail = "remove the quotes" if text[:1] in "\"'" else ""
            raise ValueError(detail)
        hour, minute, half = match.groups()
        return f"{int(hour):02d}:{minute} {half.upper()}"


@dataclass(frozen=True)
class Time24:
    """IBC's `hh:mm` (24-hour clock), or empty (off)."""

    accepted: str = "hh:mm (24-hour clock), e.g. 07:05, or empty"

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if text == "":
            return ""
        match = _TIME24.fullmatch(text)
        if not match:
            raise ValueError("")
        hour, minute = match.groups()
        return f"{int(hour):02d}:{minute}"


_EVERY = re.compile(r"every\s+([1-9][0-9]*)(?:\s+(mins?|hours?))?((?:\s+\S+){0,2})", re.I)


@dataclass(frozen=True)
class SaveSchedule:
    """IBC's SaveTwsSettingsAt: a list of hh:mm times, or `Every n [mins|hours] [start] [end]`."""

    accepted: str = (
        "hh:mm times separated by spaces (e.g. 08:00 12:30), or "
        "Every N [mins|hours] [START END] (e.g. Every 30 mins 09:00 17:00), or empty"
    )

    def parse(self, raw: str) -> str:
        text = " ".join(raw.split())
        if text == "":
            return ""
        every = _EVERY.fullmatch(text)
        if every:
            bounds = every.group(3).split()
            times = [Time24().parse(t) for t in bounds]  # ValueError on a bad start/end
            unit = f" {every.group(2).lower()}" if every.group(2) else ""
            return " ".join([f"Every {every.group(1)}{unit}", *times])
        return " ".join(Time24().parse(t) for t in text.split())


@dataclass(frozen=True)
class IpAddress:
    """An IPv4 or IPv6 address literal (no host names), normalised."""

    accepted: str = "an IPv4 or IPv6 address literal, e.g. 127.0.0.1, 0.0.0.0 or ::1"

    def parse(self, raw: str) -> str:
        try:
            return str(ipaddress.ip_address(raw.strip()))
        except ValueError:
            raise ValueError("") from None


@dataclass(frozen=True)
class NetworkList:
    """Comma-separated IP addresses or CIDR networks; empty = no restriction."""

    accepted: str = "comma-separated IP addresses or CIDR networks, e.g. 10.0.0.0/8,192.0.2.7"

    def parse(self, raw: str) -> tuple[str, ...]:
        entries: list[str] = []
        for part in raw.split(","):
            text = part.strip()
            if not text:
                continue
            try:
                if "/" in text:
                    entries.append(str(ipaddress.ip_network(text, strict=False)))
                else:
                    entries.append(str(ipaddress.ip_address(text)))
            except ValueError:
                raise ValueError(f"bad entry {text!r}") from None
        return tuple(entries)


def split_host_port(text: str) -> tuple[str, int]:
    """Split `1.2.3.4:9108` or `[::1]:9108` into an IP literal and a port; ValueError if bad."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        version = 6
    else:
        host, sep, port = text.rpartition(":")
        version = 4
    try:
        if not sep or ipaddress.ip_address(host).version != version:
            raise ValueError("")
    except ValueError:
        detail = "IPv6 addresses are written [address]:port" if ":" in host else ""
        raise ValueError(detail) from None

    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ValueError("port must be 1-65535")
    return str(ipaddress.ip_address(host)), int(port)


@dataclass(frozen=True)
class HostPort:
    """`ipv4:port` or `[ipv6]:port`, or empty (off)."""

    accepted: str = (
        "ADDRESS:PORT with an IP literal, e.g. 127.0.0.1:9108 or [::1]:9108; empty = off"
    )

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if text == "":
            return ""
        host, port = split_host_port(text)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class AbsolutePath:
    """An absolute file system path (or empty when optional); normalised."""

    optional: bool = False

    @property
    def accepted(self) -> str:
        text = "an absolute path, e.g. /var/lib/ibgwd/default/settings"
        return f"{text}, or empty" if self.optional else text

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if text == "" and self.optional:
            return ""
        if not text.startswith("/") or "\0" in text or "\n" in text:
            raise ValueError("")
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError("'..' is not allowed")
        return "/" + "/".join(parts)


@dataclass(frozen=True)
class ScriptsDir:
    """A hook directory: absolute, or relative to the instance state directory; empty = none."""

    accepted: str = (
        "a directory: absolute, or relative to /var/lib/ibgwd/<instance>; empty = no hooks"
    )

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if text == "":
            return ""
        if "\0" in text or "\n" in text or ".." in text.split("/"):
            raise ValueError("")
        return text.rstrip("/") or "/"


@dataclass(frozen=True)
class DirName:
    """One directory name (no slashes), or empty for "find it"."""

    accepted: str = "the name of one directory under TWS_PATH/ibgateway, e.g. 10.37.1o"

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if text in (".", "..") or not re.fullmatch(r"[A-Za-z0-9._+-]{0,64}", text):
            raise ValueError("")
        return text


@dataclass(frozen=True)
class UserAtHost:
    """ssh's `user@host` (a port goes into SSH_OPTIONS as `-p PORT`)."""

    accepted: str = "user@host, e.g. tunnel@bastion.example.org"

    def parse(self, raw: str) -> str:
        text = raw.strip()
        if text == "":
            return ""
        if not re.fullmatch(r"[A-Za-z0-9._][A-Za-z0-9._-]*@[A-Za-z0-9._:\[\]-]+", text):
            raise ValueError("")
        return text


@dataclass(frozen=True)
class ShellWords:
    """Extra command-line options, split like a shell would (no expansion)."""

    accepted: str = "options as on the ssh command line, e.g. -p 2222 -o Compression=yes"

    def parse(self, raw: str) -> str:
        text = raw.strip()
        try:
            shlex.split(text)
        except ValueError as e:
            raise ValueError(str(e)) from None
        if "\0" in text:
            raise ValueError("")
        return text


@dataclass(frozen=True)
class HttpUrl:
    """An http:// or https:// URL with a host, or empty (off). The error never shows it: its
    path or query may carry a token."""

    accepted: str = "an http:// or https:// URL with a host, or empty"

    def parse(self, raw: str) -> str:
        import urllib.parse

        text = raw.strip()
        if not text:
            return ""
        try:
            parts = urllib.parse.urlsplit(text)
            port_ok = parts.port is None or 0 < parts.port < 65536
        except ValueError:
            raise ValueError("not a URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError("")
        if any(c.isspace() for c in text):
            raise ValueError("contains white space")
        return text
