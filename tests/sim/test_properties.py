"""The ini parser matches java.util.Properties.load, checked against a real JVM."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

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
