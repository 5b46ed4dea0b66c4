#!/usr/bin/env bash
# Set up this machine, then run ibgwd under real systemd against the simulated gateway.
# Usage: scripts/demo.sh [--mode paper|live|both] [--vnc-password PW] [--seconds N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
