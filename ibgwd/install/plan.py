"""Pure decisions of install-gateway: URLs, versions, layout under the prefix, checksums."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from ibgwd.errors import EX_NOPERM, IbgwdError, InstallError

DEFAULT_PREFIX = "/opt/ibgwd"
CURRENT = "current"
IB_BASE_URL = "https://download2.interactivebrokers.com/installers/ibgateway"
IBC_RELEASES_URL = "https://github.com/IbcAlpha/IBC/releases"
IBC_LATEST_API_URL = "https://api.github.com/repos/IbcAlpha/IBC/releases/latest"

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
VERSION_ACCEPTED = "a letter or digit followed by up to 63 of [A-Za-z0-9._+-], not 'current'"
SHA256_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")
SHA256_ACCEPTED = "64 hexadecimal digits"

# ibgateway-10.30.1t-standalone-linux-x64.sh (gnzsnz mirror), ibgateway-1030-…, IBCLinux-3.20.0.zip
_GATEWAY_FILE_VERSION = re.compile(r"^ibgateway-(\d[A-Za-z0-9.]*)-standalone-linux-[a-z0-9]+\.sh$")
_IBC_FILE_VERSION = re.compile(r"^IBCLinux-(\d[A-Za-z0-9.]*)\.zip$")


class UsageError(IbgwdError):
    """A command-line argument of install-gateway is invalid."""

    exit_code = 64
    dbus_name = "InvalidArgument"


class UnverifiedError(InstallError):
    """A download has no checksum to compare with, and --allow-unverified was not given."""

    exit_code = EX_NOPERM


class Arch(enum.Enum):
    """IB's installer flavours, by the name part IB uses (``-linux-x64.sh``, ``-linux-arm.sh``)."""

    X64 = "x64"
    ARM = "arm"


_MACHINES = {"x86_64": Arch.X64, "amd64": Arch.X64, "aarch64": Arch.ARM, "arm64": Arch.ARM}


def arch_for_machine(machine: str) -> Arch:
    """The installer for ``uname -m``; IB publishes x86_64 and aarch64 (64-bit ARM) builds."""
    arch = _MACHINES.get(machine.lower())
    if arch is None:
        raise UsageError(
            f"this machine is {machine!r} (uname -m); IB publishes IB Gateway installers for "
            "x86_64 (--arch x64) and aarch64 (--arch arm) only"
        )
    return arch


class Channel(enum.Enum):
    """IB's release channels for the standalone Gateway installer."""

    STABLE = "stable"
    LATEST = "latest"


class Component(enum.Enum):
    GATEWAY = "ibgateway"
    IBC = "ibc"

    @property
    def title(self) -> str:
        return "IB Gateway" if self is Component.GATEWAY else "IBC"


@dataclass(frozen=True)
class Layout:
    """Where versions live under the prefix and how ibgwd's settings find them.

    ``<prefix>/ibgateway/<ver>/`` is exactly what IBC expects under ``TWS_PATH`` (it looks for
    ``<TWS_PATH>/ibgateway/<IB_GATEWAY_VERSION>/jars``), so the defaults ``TWS_PATH=<prefix>``,
    ``IB_GATEWAY_VERSION=current`` and ``IBC_PATH=<prefix>/ibc/current`` follow the symlinks.
    """

    prefix: PurePosixPath

    def root(self, component: Component) -> PurePosixPath:
        return self.prefix / component.value

    def version_dir(self, component: Component, version: str) -> PurePosixPath:
        return self.root(component) / version

    def current(self, component: Component) -> PurePosixPath:
        return self.root(component) / CURRENT

    @property
    def lock_file(self) -> PurePosixPath:
        return self.prefix / ".install.lock"

    @property
    def staging_prefix(self) -> str:
        return ".staging-"

    def settings(self) -> dict[str, str]:
        """The ibgwd settings that select the ``current`` versions under this prefix."""
        return {
            "TWS_PATH": str(self.prefix),
            "IB_GATEWAY_VERSION": CURRENT,
            "IBC_PATH": str(self.current(Component.IBC)),
        }


@dataclass(frozen=True)
class Source:
    """Where one component comes from and what its checksum must be (None: not pinned)."""

    component: Component
    version: str | None  # None: read from the downloaded installer
    url: str | None  # None when installing from a local file
    local_path: str | None
    expected_sha256: str | None
    checksum_url: str | None = None  # a published checksum file to try when not pinned

    @property
    def origin(self) -> str:
        return self.local_path if self.local_path is not None else str(self.url)


def gateway_installer_url(channel: Channel, arch: Arch = Arch.X64) -> str:
    c = channel.value
    return f"{IB_BASE_URL}/{c}-standalone/ibgateway-{c}-standalone-linux-{arch.value}.sh"


def gateway_version_url(channel: Channel) -> str:
    return f"{IB_BASE_URL}/{channel.value}-standalone/version.json"


def ibc_zip_url(version: str) -> str:
    return f"{IBC_RELEASES_URL}/download/{version}/IBCLinux-{version}.zip"


def parse_gateway_version_json(text: str) -> str:
    """``buildVersion`` from IB's version.json, which is JSONP (``cb({...});``) or plain JSON."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in version.json")
    data = json.loads(text[start : end + 1])
    version = data.get("buildVersion") if isinstance(data, dict) else None
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise ValueError(f"version.json has no usable buildVersion: {version!r}")
    return version


def parse_github_latest_tag(text: str) -> str:
    data = json.loads(text)
    tag = data.get("tag_name") if isinstance(data, dict) else None
    if not isinstance(tag, str) or not VERSION_PATTERN.match(tag):
        raise ValueError(f"GitHub latest release has no usable tag_name: {tag!r}")
    return tag


def parse_checksum_file(text: str) -> str:
    """The digest from a ``sha256sum``-style file (``<hex>  <name>`` or just ``<hex>``)."""
    first = text.split()[0] if text.split() else ""
    if not SHA256_PATTERN.match(first):
        raise ValueError("checksum file does not start with a sha256 digest")
    return first.lower()


def version_from_filename(component: Component, filename: str) -> str | None:
    pattern = _GATEWAY_FILE_VERSION if component is Component.GATEWAY else _IBC_FILE_VERSION
    match = pattern.match(filename)
    return match.group(1) if match else None


def check_version(argument: str, value: str) -> str:
    if value == CURRENT or not VERSION_PATTERN.match(value):
        raise UsageError(f"{argument}: invalid value {value!r}; accepted: {VERSION_ACCEPTED}")
    return value


def check_sha256(argument: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not SHA256_PATTERN.match(value):
        raise UsageError(f"{argument}: invalid value {value!r}; accepted: {SHA256_ACCEPTED}")
    return value.lower()


def check_prefix(value: str) -> PurePosixPath:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts or path == PurePosixPath("/"):
        raise UsageError(
            f"--prefix: invalid value {value!r}; accepted: an absolute directory other than /"
        )
    return path


def checksum_problem(source: Source, actual: str) -> str | None:
    """A clear error text when ``actual`` differs from the pinned digest, else None."""
    if source.expected_sha256 is None or source.expected_sha256 == actual:
        return None
    return (
        f"{source.component.title} {source.version}: sha256 mismatch for {source.origin}: "
        f"expected {source.expected_sha256}, got {actual}; nothing was installed"
    )
