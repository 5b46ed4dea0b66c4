"""Every externally visible name ibgwd uses, derived from one namespace and the instance."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

DEFAULT_INSTANCE = "default"
INSTANCE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
INSTANCE_ACCEPTED = "a letter followed by up to 31 letters, digits or underscores"

BUS_NAMESPACE = ("org", "ibgwd", "Gateway1")
BUS_NAME_PREFIX = ".".join(BUS_NAMESPACE)
OBJECT_PATH = "/" + "/".join(BUS_NAMESPACE)
MANAGER_INTERFACE = BUS_NAME_PREFIX + ".Manager"
ERROR_NAMESPACE = (*BUS_NAMESPACE, "Error")
ADMIN_GROUP = "ibgwd"
GATEWAY_USER = "ibgateway"  # the default instance's gateway user (kept from the old image)
INSTANCE_USER_PREFIX = "ibgw-"  # other instances: ibgw-<instance>, created by ibgwd
USER_NAME_MAX = 31  # shadow-utils and systemd-sysusers accept up to 31 characters
METRIC_PREFIX = "ibgwd"
CONFIG_DIR = "/etc/ibgwd"
RUNTIME_ROOT = "/run/ibgwd"
STATE_ROOT = "/var/lib/ibgwd"


def is_valid_instance(name: str) -> bool:
    return bool(INSTANCE_PATTERN.match(name))


@dataclass(frozen=True)
class InstanceNames:
    """Names that depend on the instance (`default` for the plain ibgwd.service)."""

    instance: str

    @property
    def is_default(self) -> bool:
        return self.instance == DEFAULT_INSTANCE

    @property
    def service(self) -> str:
        return "ibgwd.service" if self.is_default else f"ibgwd@{self.instance}.service"

    @property
    def bus_name(self) -> str:
        return f"{BUS_NAME_PREFIX}.{self.instance}"

    @property
    def config_file(self) -> str:
        stem = "ibgwd" if self.is_default else self.instance
        return f"{CONFIG_DIR}/{stem}.conf"

    @property
    def runtime_dir(self) -> str:
        return f"{RUNTIME_ROOT}/{self.instance}"

    @property
    def state_dir(self) -> str:
        return f"{STATE_ROOT}/{self.instance}"

    @property
    def gateway_user(self) -> str:
        """The user that runs this instance's children: one per instance, so one instance's
        processes cannot read another's secrets (`ibgateway` for the default instance)."""
        if self.is_default:
            return GATEWAY_USER
        name = INSTANCE_USER_PREFIX + self.instance.lower()
        if len(name) <= USER_NAME_MAX and self.instance == self.instance.lower():
            return name
        # Mixed case (user names are lower case) or too long: a stable digest keeps it unique.
        tag = hashlib.sha256(self.instance.encode()).hexdigest()[:8]
        keep = USER_NAME_MAX - len(INSTANCE_USER_PREFIX) - len(tag) - 1
        return f"{INSTANCE_USER_PREFIX}{self.instance.lower()[:keep]}-{tag}"

    @property
    def firewall_table(self) -> str:
        """The nftables table (family inet) that guards this instance's local ports."""
        return f"ibgwd_{self.instance}"

    @property
    def slice(self) -> str:
        return f"ibgwd-{self.instance}.slice"

    def unit(self, component: str, mode: str | None = None) -> str:
        """Transient unit of a component, e.g. ``ibgwd-default-ibc-paper.service``."""
        suffix = f"-{mode}" if mode else ""
        return f"ibgwd-{self.instance}-{component}{suffix}.service"

    def unit_prefix(self) -> str:
        return f"ibgwd-{self.instance}-"
