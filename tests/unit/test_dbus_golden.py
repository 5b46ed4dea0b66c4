"""The Manager interface is pinned by a golden introspection file."""

from __future__ import annotations

from pathlib import Path

from dasbus.xml import XMLGenerator

from ibgwd.dbus.interface import ManagerInterface

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "org.ibgwd.Gateway1.Manager.xml"


def test_generated_introspection_matches_golden_file() -> None:
    generated = XMLGenerator.prettify_xml(ManagerInterface.__dbus_xml__)
    assert generated == GOLDEN.read_text(), (
        "the D-Bus interface changed; if intended (additive only within Gateway1), regenerate: "
        ".venv/bin/python -c 'from ibgwd.dbus.interface import ManagerInterface as M; "
        'from dasbus.xml import XMLGenerator as X; print(X.prettify_xml(M.__dbus_xml__), end="")\''
        f" > {GOLDEN}"
    )
