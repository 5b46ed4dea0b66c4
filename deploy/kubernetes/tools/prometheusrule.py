#!/usr/bin/env python3
"""Write deploy/kubernetes/monitoring/prometheusrule.yaml from docs/monitoring/alerts.yml.

The PrometheusRule carries the same rule groups as the Prometheus rule file, unchanged; run
this after editing the alerts (a test fails while the two differ):

    python3 deploy/kubernetes/tools/prometheusrule.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
ALERTS = REPO / "docs" / "monitoring" / "alerts.yml"
TARGET = REPO / "deploy" / "kubernetes" / "monitoring" / "prometheusrule.yaml"
HEADER = """\
# GENERATED from docs/monitoring/alerts.yml by deploy/kubernetes/tools/prometheusrule.py:
# edit the alerts there and re-run the tool. ibgwd's alert rules for the Prometheus Operator.
"""


def render(alerts_text: str) -> str:
    groups = yaml.safe_load(alerts_text)["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "ibgwd"},
        "spec": {"groups": groups},
    }
    body = yaml.safe_dump(rule, sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def main(argv: list[str]) -> int:
    text = render(ALERTS.read_text(encoding="utf-8"))
    if argv == ["--check"]:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
