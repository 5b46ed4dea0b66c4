"""System tests of clean-root boxes: a debootstrap Debian lower instead of the host's root."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Box, host_mirror
from harness.box import REPO

pytestmark = pytest.mark.system

BoxFactory = Callable[..., Box]


def test_host_mirror_comes_from_the_deb822_sources(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\n# comment\nURIs: http://mirror.invalid/debian\n"
        "Suites: bookworm bookworm-updates\n"
    )
    assert host_mirror("bookworm", sources, tmp_path / "none") == "http://mirror.invalid/debian"


def test_host_mirror_falls_back_to_sources_list(tmp_path: Path) -> None:
    one_line = tmp_path / "sources.list"
    one_line.write_text("# x\ndeb [arch=amd64] http://mirror.invalid/debian bookworm main\n")
    assert host_mirror("bookworm", tmp_path / "none", one_line) == "http://mirror.invalid/debian"


def test_host_mirror_without_a_source_names_the_files(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no apt source for suite 'bookworm'"):
        host_mirror("bookworm", tmp_path / "a", tmp_path / "b")


def test_clean_debian_box_boots_without_host_packages_and_sees_the_repo_read_only(
    box_factory: BoxFactory, debian_root: Path
) -> None:
    box = box_factory(lower=debian_root)
    assert box.run("systemctl", "is-system-running").stdout.strip() in ("running", "degraded")
    # The host has python3 installed; the clean root does not.
    assert box.run("dpkg-query", "-W", "python3", check=False).returncode != 0
    assert box.run("test", "-f", str(REPO / "pyproject.toml"), check=False).returncode == 0
    touched = box.run("touch", str(REPO / "ibgwd-box-write-probe"), check=False)
    assert touched.returncode != 0
    assert "Read-only file system" in touched.stderr
    # Writes to the lower stay in the box: the cached root is reused by every later box.
    box.run("touch", "/etc/ibgwd-box-write-probe")
    assert not (debian_root / "etc/ibgwd-box-write-probe").exists()
