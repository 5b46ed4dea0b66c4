"""The bash completions shipped in the .deb, run by a real bash (bash-completion's helpers are
stubbed: _init_completion fills cur/prev/words/cword from COMP_WORDS as the real one does)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ibgwd import ctl

COMPLETIONS = Path(__file__).resolve().parents[2] / "completions"
STUB = """
_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD;
  cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; }
_filedir() { COMPREPLY=(FILES); }
"""


def complete(program: str, line: list[str]) -> list[str]:
    script = (
        STUB
        + f"source {COMPLETIONS / program}\n"
        + "COMP_WORDS=("
        + " ".join(f"'{w}'" for w in line)
        + ")\n"
        + f"COMP_CWORD={len(line) - 1}\n"
        + f"_{program}\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n"
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_every_ibgwdctl_command_is_offered() -> None:
    offered = complete("ibgwdctl", ["ibgwdctl", ""])
    parser = ctl.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) <= set(offered)  # type: ignore[arg-type]
    assert {"--json", "--instance", "--version"} <= set(offered)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (["ibgwdctl", "logs", "--component", ""], {"ibc", "relay", "vnc", "tunnel"}),
        (["ibgwdctl", "--instance", "x", "restart", "--"], {"--hard", "--wait", "--mode"}),
        (["ibgwdctl", "is-ready", "--mode", ""], {"live", "paper"}),
        (["ibgwdctl", "screenshot", "-o", ""], {"FILES"}),
        (["ibgwd", "check-config", "--"], {"--show", "--instance"}),
        (["ibgwd", ""], {"check-config", "render", "run", "ctl", "install-gateway"}),
    ],
)
def test_options_and_values(line: list[str], expected: set[str]) -> None:
    assert expected <= set(complete(line[0], line))
