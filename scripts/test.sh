#!/usr/bin/env bash
# Run every test: lint, types, unit, integration and the system tests under real systemd.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export CI="${CI:-1}"  # system tests fail instead of skipping when not root
echo "== ruff"
ruff check ibgwd ibgwd_sim tests bench scripts
ruff format --check ibgwd ibgwd_sim tests bench scripts
echo "== mypy --strict ibgwd ibgwd_sim"
mypy --strict ibgwd ibgwd_sim
echo "== pytest"
exec python -m pytest -q -rs "$@"
