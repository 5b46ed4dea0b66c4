#!/usr/bin/env bash
# Run every test: lint, types, unit, integration and the system tests under real systemd.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:/usr/sbin:/usr/bin:/sbin:/bin"
echo "== ruff" && ruff check ibgwd ibgwd_sim tests bench && ruff format --check ibgwd ibgwd_sim tests bench
echo "== mypy --strict ibgwd" && mypy --strict ibgwd
echo "== pytest"
exec python -m pytest -q -rs "$@"
