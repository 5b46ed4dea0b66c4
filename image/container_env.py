#!/usr/bin/python3 -P
"""Hand the container's ibgwd settings from PID 1's environment to ibgwd.service, secrets as files.

systemd does not pass its own environment (the one `docker run -e`/`env_file` set) to services.
This runs once at boot (ibgwd-container-env.service, ordered before ibgwd.service) and writes,
on the /run tmpfs only:

- ``/run/ibgwd-container/env`` (0600): every ibgwd setting found in /proc/1/environ, and its
  ``NAME_FILE`` variant, as systemd ``EnvironmentFile=`` lines, which ibgwd.service reads via the
  drop-in ``ibgwd.service.d/container.conf``;
- ``/run/ibgwd-container/secrets/<NAME>`` (0600): the value of each secret that was given as a
  plain variable (e.g. ``TWS_PASSWORD``); the env file then says ``TWS_PASSWORD_FILE=<that file>``
  instead, so no secret value is in ibgwd's environment, in any argv or in any file on disk.

A secret given both plainly and as ``NAME_FILE`` is passed as the user's ``NAME_FILE`` plus a
placeholder ``NAME``, so ibgwd reports "only one of NAME and NAME_FILE" as the old image did.
Variables that are not ibgwd settings (PATH, container, HOSTNAME...) are left out.

Installed in the image as /usr/lib/ibgwd-container/import-env; `import-env --check` prints the
planned file (secrets redacted) without writing. Exit status 78 if /run is not a tmpfs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ibgwd.config import spec

log = logging.getLogger("ibgwd.container_env")

OUT_DIR = Path("/run/ibgwd-container")
ENV_FILE = OUT_DIR / "env"
SECRETS_DIR = OUT_DIR / "secrets"
CONFLICT_PLACEHOLDER = "set-in-the-container-environment"
EX_CONFIG = 78
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})


@dataclass(frozen=True)
class Plan:
    """What to write: ordered (name, value) env lines and (name, value) secret files."""

    env: tuple[tuple[str, str], ...]
    secret_files: tuple[tuple[str, str], ...]


def _is_setting(name: str) -> bool:
    return name in spec.BY_NAME or (name.endswith("_FILE") and name[:-5] in spec.BY_NAME)


def plan(environ: Mapping[str, str], secrets_dir: Path = SECRETS_DIR) -> Plan:
    """Decide the env lines and secret files for ``environ`` (pure)."""
    env: dict[str, str] = {}
    files: list[tuple[str, str]] = []
    for name in sorted(filter(_is_setting, environ)):
        value = environ[name]
        if name not in spec.SECRET_NAMES or value == "":
            env[name] = value
            continue
        file_name = f"{name}_FILE"
        if environ.get(file_name, ""):
            env[name] = CONFLICT_PLACEHOLDER  # ibgwd refuses NAME with NAME_FILE, naming both
            continue
        files.append((name, value))
    for name, _ in files:
        env[f"{name}_FILE"] = str(secrets_dir / name)
    return Plan(tuple(sorted(env.items())), tuple(files))


def quote(value: str) -> str:
    """Quote for systemd's EnvironmentFile= (and ibgwd's conffile parser): double quotes."""
    escaped = "".join("\\" + c if c in '"\\$`' else c for c in value)
    return f'"{escaped}"'


def env_file_text(lines: Iterable[tuple[str, str]]) -> str:
    head = "# Written at boot by ibgwd-container-env.service from PID 1's environment.\n"
    return head + "".join(f"{name}={quote(value)}\n" for name, value in lines)


def parse_environ(data: bytes) -> dict[str, str]:
    """/proc/<pid>/environ: NUL-separated NAME=VALUE (undecodable bytes replaced)."""
    out: dict[str, str] = {}
    for item in data.split(b"\0"):
        name, sep, value = item.decode("utf-8", "surrogateescape").partition("=")
        if sep and name:
            out[name] = value
    return out


def filesystem_type(path: Path, mountinfo: str) -> str:
    """The type of the filesystem holding ``path``, from /proc/self/mountinfo text (pure)."""
    best, best_type = "", ""
    target = str(path)
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = fields[4]
        fs_type = line.split(" - ", 1)[1].split()[0]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode("utf-8", "surrogateescape"))
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    tmp.replace(path)


def write(p: Plan) -> None:
    fs_type = filesystem_type(OUT_DIR.parent, Path("/proc/self/mountinfo").read_text())
    if fs_type not in MEMORY_FILESYSTEMS:
        log.error(
            "event=refused setting=/run value=%s accepted=tmpfs|ramfs "
            "reason=secrets are only written to memory; mount a tmpfs on /run",
            fs_type or "unknown",
        )
        raise SystemExit(EX_CONFIG)
    SECRETS_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    OUT_DIR.chmod(0o700)
    SECRETS_DIR.chmod(0o700)
    for old in SECRETS_DIR.iterdir():
        old.unlink()
    for name, value in p.secret_files:
        _write_private(SECRETS_DIR / name, value)
    _write_private(ENV_FILE, env_file_text(p.env))
    log.info(
        "event=container-env-written file=%s settings=%d secrets_as_files=%s",
        ENV_FILE,
        len(p.env),
        ",".join(n for n, _ in p.secret_files) or "none",
    )


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if argv[1:] not in ([], ["--check"]):
        sys.stderr.write("usage: import-env [--check]\n")
        return 64
    try:
        p = plan(parse_environ(Path("/proc/1/environ").read_bytes()))
    except OSError as e:
        log.error("event=cannot-read-pid1-environ error=%s", e.strerror)
        return EX_CONFIG
    if argv[1:] == ["--check"]:
        shown = [(n, "<redacted>" if n in spec.SECRET_NAMES else v) for n, v in p.env]
        sys.stdout.write(env_file_text(shown))
        return 0
    write(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
