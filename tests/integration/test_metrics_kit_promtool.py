"""docs/monitoring passes Debian's promtool: rule syntax, rule unit tests, example config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[2] / "docs" / "monitoring"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=KIT, capture_output=True, text=True, timeout=120)


def test_promtool_check_rules_accepts_the_alerts() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    yaml = pytest.importorskip("yaml")
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((KIT / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load((KIT / "alerts_test.yml").read_text())["tests"]:
        assert case["input_series"], case["name"]
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert (fires, quiet) == (alerts, alerts)


def test_promtool_check_config_accepts_the_example_prometheus_yml() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
