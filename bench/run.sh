#!/bin/sh
# Run every ibgwd benchmark (as root): bench/run.sh [--quick] [--only relay,daemon]
cd "$(dirname "$0")/.." && exec .venv/bin/python -m bench "$@"
