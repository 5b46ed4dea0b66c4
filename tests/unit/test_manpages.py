"""Man pages: render without groff warnings, have the usual sections, match the code."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from ibgwd.config import spec
from ibgwd.install import _parser as install_parser

REPO = Path(__file__).resolve().parents[2]
MAN = REPO / "docs" / "man"
PAGES = [
    line.split("/")[-1] for line in (REPO / "packaging/debian/ibgwd.manpages").read_text().split()
]
SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "EXAMPLES", "SEE ALSO"]


def load_generator() -> ModuleType:
    module_spec = importlib.util.spec_from_file_location("settings_roff", MAN / "settings_roff.py")
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_packaged_pages_are_ibgwd_8_ibgwd_conf_5_and_ibgwdctl_8() -> None:
    assert sorted(PAGES) == ["ibgwd.8", "ibgwd.conf.5", "ibgwdctl.8"]


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_without_warnings_and_has_the_usual_sections(page: str) -> None:
    r = subprocess.run(
        ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", str(MAN / page)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": "0"},
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    text = re.sub(r".\x08", "", r.stdout)
    headings = [line for line in text.splitlines() if line and not line[0].isspace()]
    for section in SECTIONS:
        assert section in headings, f"{page} lacks {section}"
    if page.endswith(".8"):
        assert "EXIT STATUS" in headings


def test_settings_section_of_ibgwd_conf_5_matches_the_settings_table() -> None:
    gen = load_generator()
    page = (MAN / "ibgwd.conf.5").read_text(encoding="utf-8")
    assert gen.replace_section(page, gen.settings_section()) == page, (
        "docs/man/ibgwd.conf.5 is stale: run `PYTHONPATH=. .venv/bin/python "
        "docs/man/settings_roff.py`"
    )
    for s in spec.SETTINGS:
        assert f"\n.B {s.name}" in page


def test_every_install_gateway_option_is_documented_in_ibgwd_8() -> None:
    page = (MAN / "ibgwd.8").read_text(encoding="utf-8").replace("\\-", "-")
    options = [
        o
        for action in install_parser()._actions
        for o in action.option_strings
        if o.startswith("--") and o != "--help"
    ]
    assert len(options) == 15
    for option in options:
        assert option in page, f"ibgwd.8 does not document install-gateway {option}"
