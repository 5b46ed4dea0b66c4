"""PID 1 of a new box until systemd: builds the overlay root, masks host units, execs systemd.

Run by the launcher as ``/usr/bin/python3 -I -S inner.py CONFIG_JSON`` inside fresh pid, mount,
uts, ipc, net and cgroup namespaces. Standalone on purpose (stdlib only, no package imports):
it runs before the box has a root of its own. Every mount it makes lives in the box's private
mount namespace and vanishes with the box's last process.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

# systemd mounts these kernel API file systems read-write unless masked; debugfs and tracefs act
# on the host kernel, the others are of no use in a box.
KERNEL_MOUNT_UNITS = (
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
)
HOST_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def build_root(cfg: dict[str, object]) -> Path:
    """Mount the overlay root and the API file systems under it; returns the new root."""
    name = str(cfg["name"])
    mnt = Path(str(cfg["state_dir"])) / "mnt"
    lower = str(cfg["lower"])
    mount("--make-rprivate", "/")
    mount("-t", "tmpfs", "-o", "mode=0755,size=8G", f"ibgwd-box-{name}", str(mnt))
    for d in ("upper", "work", "root"):
        (mnt / d).mkdir()
    r = mnt / "root"
    opts = f"lowerdir={lower},upperdir={mnt}/upper,workdir={mnt}/work"
    mount("-t", "overlay", "-o", opts, f"ibgwd-box-{name}", str(r))
    hidden = cfg.get("hide", [])
    assert isinstance(hidden, list)
    hide(r, [str(h) for h in hidden])

    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", f"{r}/proc")
    mount("--bind", f"{r}/proc/sys", f"{r}/proc/sys")  # no host sysctls from inside
    mount("-o", "remount,bind,ro,nosuid,nodev,noexec", f"{r}/proc/sys")
    mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", f"{r}/sys")
    # Through the cgroup namespace this is the box's own subtree of the host's cgroup2.
    mount("-t", "cgroup2", "-o", "nosuid,nodev,noexec", "cgroup2", f"{r}/sys/fs/cgroup")

    dev = r / "dev"
    mount("-t", "tmpfs", "-o", "mode=0755,nosuid,size=4m", "dev", str(dev))
    for n in HOST_DEVICES:
        (dev / n).touch()
        mount("--bind", f"/dev/{n}", str(dev / n))
    (dev / "pts").mkdir()
    mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620,gid=5", "devpts", f"{dev}/pts")
    (dev / "ptmx").symlink_to("pts/ptmx")
    (dev / "shm").mkdir()
    os.chmod(dev / "shm", 0o1777)
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "shm", f"{dev}/shm")
    (dev / "mqueue").mkdir()
    mount("-t", "mqueue", "mqueue", f"{dev}/mqueue")
    (dev / "fd").symlink_to("/proc/self/fd")
    for i, n in enumerate(("stdin", "stdout", "stderr")):
        (dev / n).symlink_to(f"/proc/self/fd/{i}")

    mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev,size=256m", "run", f"{r}/run")
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmp", f"{r}/tmp")

    binds = cfg["binds"]
    assert isinstance(binds, list)
    for host, box, ro in binds:
        target = r / str(box).lstrip("/")
        if Path(host).is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        mount("--rbind", str(host), str(target))
        if ro:
            mount("-o", "remount,bind,ro", str(target))
    return r


def hide(r: Path, paths: list[str]) -> None:
    """Remove ``paths`` from the box's view of the lower root: deleting through the overlay
    writes whiteouts into the box's tmpfs layer, so the lower root (the host) keeps its copy.
    The box then starts from the product's own clean state, whatever the host holds there."""
    for p in paths:
        target = r / p.lstrip("/")
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)


def configure(r: Path, cfg: dict[str, object]) -> None:
    """Runtime-mask what the lower root enables, make the journal volatile, name the box."""
    unmask = set(map(str, cfg["unmask"]))  # type: ignore[call-overload]
    masks = r / "run/systemd/system"
    masks.mkdir(parents=True, exist_ok=True)
    enabled = {p.name for p in (r / "etc/systemd/system").glob("*.wants/*")}
    for unit in sorted((enabled | set(KERNEL_MOUNT_UNITS)) - unmask):
        (masks / unit).symlink_to("/dev/null")  # what `systemctl mask --runtime` writes
    conf = r / "run/systemd/journald.conf.d"
    conf.mkdir(parents=True)
    (conf / "ibgwd-box.conf").write_text("[Journal]\nStorage=volatile\n")
    # Docker-style policy-rc.d ("exit 101") would stop postinst from starting services.
    if cfg["remove_policy_rc_d"]:
        (r / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
    (r / "etc/hostname").write_text(f"{cfg['name']}\n")
    (r / "etc/machine-id").write_text(f"{uuid.uuid4().hex}\n")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    r = build_root(cfg)
    configure(r, cfg)
    os.chdir(r)
    subprocess.run(["pivot_root", ".", "."], check=True)
    subprocess.run(["umount", "-l", "."], check=True)
    os.chdir("/")
    # systemd leaves propagation as found in a container; LoadCredential= needs it shared.
    mount("--make-rshared", "/")
    socket.sethostname(str(cfg["name"]))
    systemd = "/lib/systemd/systemd"
    argv = [systemd, "--system", "--unit=multi-user.target", "--show-status=false"]
    os.execve(systemd, argv, {"container": "other", "TERM": "dumb"})


if __name__ == "__main__":
    main()
