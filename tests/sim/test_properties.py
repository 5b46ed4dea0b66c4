"""The ini parser matches java.util.Properties.load, checked against a real JVM."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ibgwd_sim.harness import TRICKY_PASSWORD
from ibgwd_sim.properties import parse_properties

JAVA_SOURCE = """
import java.io.*;
import java.util.*;
public class Props {
    static String hex(String s) {
        StringBuilder b = new StringBuilder();
        for (char c : s.toCharArray()) b.append(String.format("%04x", (int) c));
        return b.toString();
    }
    public static void main(String[] args) throws Exception {
        for (String name : args) {
            System.out.println("FILE " + name);
            Properties p = new Properties();
            try (InputStream in = new FileInputStream(name)) {
                p.load(in);
            } catch (IllegalArgumentException e) {
                System.out.println("ERROR");
                continue;
            }
            for (String k : p.stringPropertyNames())
                System.out.println("KV " + hex(k) + " " + hex(p.getProperty(k)));
        }
    }
}
"""


def _hex(s: str) -> str:
    return "".join(f"{ord(c):04x}" for c in s)


@pytest.fixture(scope="module")
def java_props(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Props.class compiled once; running it is much faster than the source launcher."""
    if shutil.which("javac") is None:
        pytest.skip("needs a JDK (default-jdk)")
    classes = tmp_path_factory.mktemp("props")
    (classes / "Props.java").write_text(JAVA_SOURCE)
    subprocess.run(["javac", "Props.java"], cwd=classes, check=True, timeout=120)
    return classes


def _java_parse(classes: Path, tmp: Path, inputs: list[bytes]) -> list[object]:
    names = []
    for i, data in enumerate(inputs):
        (tmp / f"in{i}.properties").write_bytes(data)
        names.append(str(tmp / f"in{i}.properties"))
    out = subprocess.run(
        ["java", "-Xshare:auto", "-cp", str(classes), "Props", *names],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    results: list[object] = []
    for line in out.splitlines():
        if line.startswith("FILE "):
            results.append({})
        elif line == "ERROR":
            results[-1] = "ERROR"
        else:
            _, k, v = (line + " ").split(" ", 2)
            current = results[-1]
            assert isinstance(current, dict)
            current[k] = v.strip()
    return results


def _python_parse(data: bytes) -> object:
    try:
        return {_hex(k): _hex(v) for k, v in parse_properties(data).items()}
    except ValueError:
        return "ERROR"


CASES = [
    b"IbPassword=se\\\\cret\n",
    b"  key = value with spaces  \n",
    b"key:value\nother value2\n",
    b"# comment\n! also comment\nk=v\n",
    b"multi=first \\\n    second \\\r\n  third\n",
    b"uni=\\u00e9t\\u00E9\n",
    b"bad=\\u12\n",
    b"tab=\\t\\n\\r\\f\\q\n",
    b"a\\=b=c\n",
    b"a\\ b c\n",
    b"\\\n#not a comment?\n",
    b"x=y\\",
    b"latin=\xe9\xff\n",
    b"dup=1\ndup=2\n",
    b"k=v\\\n\nz=1\n",
    b"   \n\t\f\nonlykey\n",
    b"k==v\nk2=:v\nk3 = = v\n",
]


def test_hand_written_cases_match_java(java_props: Path, tmp_path: Path) -> None:
    assert [_python_parse(c) for c in CASES] == _java_parse(java_props, tmp_path, CASES)


ALPHABET = "ab =:\\\n\r\t\f#!u0Fé "


@settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.generate],  # one JVM run checks 300 inputs; shrinking would rerun it often
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=30), min_size=300, max_size=300))
def test_random_inputs_match_java(java_props: Path, tmp_path: Path, texts: list[str]) -> None:
    inputs = [t.encode("latin-1") for t in texts]
    python = [_python_parse(d) for d in inputs]
    java = _java_parse(java_props, tmp_path, inputs)
    mismatches = [(t, p, j) for t, p, j in zip(texts, python, java, strict=True) if p != j]
    assert mismatches == []


def test_password_with_backslash_and_unicode_escape() -> None:
    parsed = parse_properties(b"IbPassword=p\\\\w\\u0021\nTradingMode = paper\n")
    assert parsed == {"IbPassword": "p\\w!", "TradingMode": "paper"}


def _stack_module() -> ModuleType:
    """tests/system/stack.py, imported as the system tests do (tests/ on sys.path)."""
    tests = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(tests))
    try:
        spec = importlib.util.spec_from_file_location("_stack_for_sim", tests / "system/stack.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(tests))


def test_tricky_password_survives_conffile_config_ini_and_simulation_conf(tmp_path: Path) -> None:
    """The system tests' password goes: stack.write_conf (_quote) -> ibgwd's conffile parser
    -> ibgwd's config.ini escaping -> the sim's java.util.Properties reader (IBC's
    DefaultSettings loads config.ini with Properties.load); and stack.write_sim_conf ->
    simulation.conf -> AcceptPassword. Each hop must give back exactly the same string."""
    from ibgwd.config.sources import parse_conffile
    from ibgwd.render.properties import escape_value as ibgwd_escape
    from ibgwd_sim.simconf import parse_sim_conf

    stack = _stack_module()
    password = stack.TRICKY_PASSWORD
    assert password == TRICKY_PASSWORD
    for special in "#!:=\\ ":
        assert special in password.strip()
    assert any(ord(c) > 0xFF for c in password) and any(0x7F < ord(c) <= 0xFF for c in password)

    conffile = f"TWS_PASSWORD={stack._quote(password)}\n"
    values, problems = parse_conffile(conffile, "ibgwd.conf")
    assert problems == [] and values["TWS_PASSWORD"] == password

    ini = f"IbPassword={ibgwd_escape(password)}\n".encode("ascii")
    assert parse_properties(ini)["IbPassword"] == password

    class _Box:
        def path(self, p: str) -> Path:
            target = tmp_path / p.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            return target

    stack.write_sim_conf(_Box(), {})
    text = (tmp_path / stack.SIM_PREFIX.lstrip("/") / "ibc/simulation.conf").read_text("utf-8")
    assert parse_sim_conf(text).accept_password == password
