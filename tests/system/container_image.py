"""The container image built once per test session from the repository's Dockerfile with
GATEWAY=simulated, and the podman helpers the container tests share (test_container.py,
test_kube_play.py). The fixture `image` lives in tests/system/conftest.py.

Runs only with `--network=none` (no CNI bridge on the shared host); builds use the host network
for apt. The imported base image and podman's layer cache are kept between runs; the session's
image tag and podman's leftover cgroup dirs are removed, pass or fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import debian_rootfs
from harness.box import REPO

ROOTFS_CACHE = Path("/var/tmp/ibgwd-box-cache")
BASE_IMAGE = "localhost/ibgwd-test-base:bookworm"
CONTAINERS_CONF = REPO / "image" / "containers.conf"
BUILD_CONTEXT_FILES = ("Dockerfile", ".dockerignore", "image")


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(
    *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({r.returncode}):\n{r.stderr}")
    return r


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def remove_libpod_cgroups() -> None:
    """podman (cgroupfs manager) leaves libpod_parent dirs; remove them once nothing runs."""
    if podman("ps", "-q", check=False).stdout.strip():
        return
    for top in Path("/sys/fs/cgroup").glob("*/libpod_parent"):
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def ensure_base_image() -> None:
    """Import the debootstrap root as a base image once; later runs reuse it."""
    with open(ROOTFS_CACHE / "podman-base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return
        rootfs = debian_rootfs(ROOTFS_CACHE)
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--exclude=./.ibgwd-box-complete", "-c", "."],
            stdout=subprocess.PIPE,
        )
        r = subprocess.run(
            ["podman", "import", "--change", 'CMD ["/bin/bash"]', "-", BASE_IMAGE],
            stdin=tar.stdout,
            env=podman_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert tar.wait() == 0 and r.returncode == 0, f"podman import failed:\n{r.stderr}"


def built_image(context: Path) -> Iterator[str]:
    """Build the image in `context` (a scratch directory); yield its tag; remove it after.

    IBGWD_TEST_IMAGE=<tag> uses an image built beforehand instead (kept), to iterate on tests.
    """
    prebuilt = os.environ.get("IBGWD_TEST_IMAGE", "")
    if prebuilt:
        yield prebuilt
        return
    if os.geteuid() != 0 or shutil.which("podman") is None:
        why = "container tests need root and podman (scripts/setup.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    ROOTFS_CACHE.mkdir(parents=True, exist_ok=True)
    ensure_base_image()
    for name in BUILD_CONTEXT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / name)
    r = subprocess.run(
        [str(REPO / "scripts/build-deb.sh"), "-o", str(context / "dist")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, f"build-deb.sh failed:\n{r.stderr[-3000:]}"
    (deb,) = (context / "dist").glob("ibgwd_*_all.deb")
    deb_sha256 = hashlib.sha256(deb.read_bytes()).hexdigest()
    tag = f"localhost/ibgwd-test:{uuid.uuid4().hex[:12]}"
    try:
        podman(
            "build",
            "--network=host",
            "--format=docker",  # OCI images have no HEALTHCHECK
            "--build-arg",
            f"BASE_IMAGE={BASE_IMAGE}",
            "--build-arg",
            "GATEWAY=simulated",
            "--build-arg",  # this tree's package, never a cached layer of an older build
            f"IBGWD_DEB_SHA256={deb_sha256}",
            "-t",
            tag,
            str(context),
            timeout=900,
        )
        yield tag
    finally:
        podman("rmi", "-f", tag, check=False)
        remove_libpod_cgroups()
