"""tests/corpus/ibc-log-lines.txt is well formed (the classifier's test reads it).

The classification itself is tested by the log classifier's own test; this one guards the
data: three TAB-separated fields, an event from the vocabulary, a source, and lines shaped as
they reach the journal (IBC's prefix for the JVM's lines).
"""

from __future__ import annotations

import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "ibc-log-lines.txt"
VOCABULARY = frozenset(
    {
        "none",
        "jvm_starting",
        "login_dialog",
        "twofa_initiated",
        "twofa_device_select",
        "twofa_duration",
        "twofa_expired_waiting",
        "twofa_relogin",
        "twofa_exit_pending",
        "login_completed",
        "login_failed",
        "shutdown_started",
        "restart_scheduled",
        "cold_restart_scheduled",
        "cold_restarting",
        "jvm_exited",
        "relaunching",
        "paused",
        "exit_error",
        "existing_session",
    }
)
IBC_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d\d\d IBC: ")


def _entries() -> list[tuple[int, str, str, str]]:
    entries = []
    for number, raw in enumerate(CORPUS.read_text(encoding="utf-8").splitlines(), 1):
        if not raw or raw.startswith("#"):
            continue
        fields = raw.split("\t")
        assert len(fields) == 3, f"line {number}: expected 3 TAB-separated fields"
        entries.append((number, *fields))
    return entries


def test_every_entry_names_a_known_event_and_a_source() -> None:
    entries = _entries()
    assert len(entries) >= 100
    for number, event, source, line in entries:
        assert event in VOCABULARY, f"line {number}: unknown event {event!r}"
        assert source.startswith(("IBC 3.24.1 ", "IbcAlpha/IBC#")) or "#" in source, number
        assert line == line.strip() or IBC_PREFIX.match(line) or "(raw)" in source, number


def test_ibc_source_lines_carry_ibcs_prefix_and_launcher_lines_none() -> None:
    for number, _event, source, line in _entries():
        if source.startswith("IBC 3.24.1 src/") and "(raw)" not in source:
            assert IBC_PREFIX.match(line), f"line {number}: JVM line without IBC's prefix"
        if "ibcstart.sh" in source:
            assert not IBC_PREFIX.match(line), f"line {number}: launcher lines have no prefix"


def test_every_event_of_the_vocabulary_has_lines() -> None:
    assert {event for _n, event, _s, _l in _entries()} == VOCABULARY


def test_one_login_failed_dialog_counts_once() -> None:
    """The "Login failed" dialog's window-event lines are in the corpus as "none", next to the
    one LoginFailedDialogHandler line (IbcAlpha/IBC#216, LoginFailedDialogHandler.java:41)."""
    dialog = [(e, ln) for _n, e, _s, ln in _entries() if "Login failed" in ln]
    assert {e for e, ln in dialog if "event=" in ln} == {"none"}
    assert {e for e, ln in dialog if ln.endswith("IBC: Login failed")} == {"login_failed"}
