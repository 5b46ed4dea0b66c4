"""The benchmarks still run: `python -m bench --quick` end to end (it asserts no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]


# The quick run boots several boxes (a compressed week among them): minutes, not the default
# 300 s of pytest-timeout; the subprocess has its own 1200 s bound below.
@pytest.mark.timeout(1300)
def test_quick_benchmark_run_measures_every_part_and_writes_results(
    as_root: None, tmp_path: Path
) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    relay = results["relay"]["summary"]
    assert set(relay) >= {"direct", "plain_socat", "ibgwd_relay"}
    assert relay["ibgwd_relay"]["split_samples"] > 0
    assert "nodelay" in " ".join(results["relay"]["commands"]["ibgwd_relay"])
    daemon = results["daemon"]
    for kind in ("start", "restart", "soft_restart"):
        assert daemon["ready"]["raw"][kind][0]["total_s"] is not None, kind
    assert daemon["ready"]["raw"]["bare"][0]["total_s"] is not None  # the same-run baseline
    for kind in ("frozen", "killed"):
        assert daemon["failure"]["raw"][kind][0]["recovery_start_s"] is not None, kind
        assert 0 <= daemon["failure"]["raw"][kind][0]["phase"] < 1, kind
    week = daemon["continuity"]["week"]
    kinds = {s["kind"] for s in week["steps"]}
    assert kinds >= {"nightly_restart", "cold_restart", "ibgwd_restart", "upgrade"}, kinds
    assert all(s["outage_s"] >= 0 for s in week["steps"])
    assert week["recovered"] and week["full_logins_at_start"] == 1
    assert week["restored_sessions"] >= 1  # the nightly restart kept the session
    footprint = daemon["footprint"]
    for part in ("idle", "floor_idle", "old_follower_idle"):
        assert footprint[part]["rss_kib"] > 0, part
    assert footprint["floor_scrape"]["n"] > 0
    assert all(s["ready"] == s["instances"] for s in daemon["scale"])
    text = (tmp_path / "latest.md").read_text()
    assert "| relay |" in text
    assert "## Verdicts" in text
    assert "| relay |" in r.stdout
