"""The README's first command works: the demo boots a box, reaches READY and serves ib_async."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]


def test_demo_reaches_ready_and_ib_async_gets_the_time_through_the_relay(as_root: None) -> None:
    # scripts/demo.sh is scripts/setup.sh (run by .ci/run already) + this script.
    r = subprocess.run(
        [sys.executable, "scripts/demo.py", "--seconds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "(READY=1)" in r.stdout
    assert 'Status: "ready: API live on 4002, relay on 4004"' in r.stdout
    line = re.search(r"^ib_async through the relay: (\{.*\})$", r.stdout, re.MULTILINE)
    assert line, r.stdout[-3000:]
    answer = json.loads(line.group(1))
    assert answer["ok"] is True and answer["accounts"], answer
    assert r.stdout.rstrip().endswith("box removed")
