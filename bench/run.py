"""Command line of the benchmarks: run the parts, print the tables, write results and docs."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import relay, report
from bench.cbuild import build

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
PARTS = ("relay", "daemon")


def _commit() -> str:
    r = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stdout.strip() or "unknown"


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench", description=__doc__)
    ap.add_argument(
        "--quick", action="store_true", help="tiny runs that only prove every benchmark still works"
    )
    ap.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run: {', '.join(PARTS)} (default: all)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results directory (default: bench/results for a full run; a quick "
        "run writes nowhere unless given)",
    )
    ap.add_argument("--no-docs", action="store_true", help="do not regenerate docs/benchmarks.md")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(only) - set(PARTS)
    if unknown:
        print(
            f"bench: --only {args.only!r}: unknown part(s) {sorted(unknown)}; "
            f"accepted: {', '.join(PARTS)}",
            file=sys.stderr,
        )
        return 2
    tools = build()
    results: dict[str, Any] = {
        "meta": {
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "mode": "quick" if args.quick else "full",
            "commit": _commit(),
        }
    }
    if "relay" in only:
        results["relay"] = relay.run(tools, relay.QUICK if args.quick else relay.FULL)
    if "daemon" in only:
        from bench import daemon

        results["daemon"] = daemon.run(tools, daemon.QUICK if args.quick else daemon.FULL)
    text = report.markdown(results)
    print(text)
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "latest.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        (out / "latest.md").write_text(text)
        if not args.no_docs and out.resolve() == RESULTS.resolve() and set(only) == set(PARTS):
            DOC.write_text(report.doc(results))
    return 0
