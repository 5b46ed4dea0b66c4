"""IBC reads config.ini with java.util.Properties: prove tricky credentials arrive unchanged."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from settings_samples import DUAL_ENV, load

from ibgwd.render.render import render_files
from ibgwd.render.write import write_files

pytestmark = pytest.mark.skipif(
    shutil.which("javac") is None, reason="needs a JDK (scripts/setup.sh installs one)"
)

# Loads a properties file like IBC's DefaultSettings (Properties.load(InputStream), i.e.
# ISO-8859-1) and prints the requested keys as UTF-16 code units in hex, one per line.
JAVA = """\
import java.io.FileInputStream;
import java.util.Properties;

public class ReadProps {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) { p.load(in); }
        for (int i = 1; i < args.length; i++) {
            String v = p.getProperty(args[i]);
            StringBuilder b = new StringBuilder(args[i]).append('=');
            if (v == null) { b.append("MISSING"); }
            for (int j = 0; v != null && j < v.length(); j++) {
                b.append(String.format("%04x", (int) v.charAt(j)));
            }
            System.out.println(b);
        }
    }
}
"""

TRICKY = [
    "back\\slash",
    "a=b:c#d!e",
    "  leading and trailing  ",
    "#starts with hash",
    "!starts with bang",
    "euro € and 密码",
    "emoji 😀 beyond the BMP",
    "tab\tand\\nnot a newline",
    "ümlaut Latin-1 ÿ",
    " ",
    "\\u0041 is not an escape",
]


def utf16_hex(text: str) -> str:
    return text.encode("utf-16-be", "surrogatepass").hex()


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("java")
    (directory / "ReadProps.java").write_text(JAVA, encoding="utf-8")
    subprocess.run(["javac", "ReadProps.java"], cwd=directory, check=True, timeout=120)
    return directory


def read_with_java(reader: Path, path: Path, keys: list[str]) -> dict[str, str]:
    result = subprocess.run(
        ["java", "-cp", str(reader), "ReadProps", str(path), *keys],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


@pytest.mark.parametrize("value", TRICKY)
def test_tricky_password_and_user_id_reach_ibc_unchanged(
    reader: Path, tmp_path: Path, value: str
) -> None:
    env = {**DUAL_ENV, "TWS_PASSWORD": value, "TWS_USERID": value[::-1]}
    env["TWS_PASSWORD_PAPER"] = "p:" + value
    env["TWOFA_DEVICE"] = value
    files = render_files(load(env, tmp_path), runtime_dir=tmp_path / "run")
    write_files(f for f in files if not f.only_if_missing)
    live = tmp_path / "run" / "ibc" / "config-live.ini"
    paper = tmp_path / "run" / "ibc" / "config-paper.ini"
    keys = ["IbLoginId", "IbPassword", "SecondFactorDevice", "TradingMode", "CommandServerPort"]
    got = read_with_java(reader, live, keys)
    assert got == {
        "IbLoginId": utf16_hex(value[::-1]),
        "IbPassword": utf16_hex(value),
        "SecondFactorDevice": utf16_hex(value),
        "TradingMode": utf16_hex("live"),
        "CommandServerPort": utf16_hex("7462"),
    }
    got = read_with_java(reader, paper, ["IbLoginId", "IbPassword", "TradingMode"])
    assert got == {
        "IbLoginId": utf16_hex("paperuser"),
        "IbPassword": utf16_hex("p:" + value),
        "TradingMode": utf16_hex("paper"),
    }
