#!/usr/bin/env bash
# Throwaway boxes running real systemd, for humans. See docs/testing.md.
# Usage: tests/box.sh start NAME [--lower ROOTFS|--debian] [--bind HOST:BOX[:ro]]...
#        tests/box.sh exec|hexec [-u USER] NAME [CMD...]   (default CMD: bash)
#        tests/box.sh stop NAME | list | gc
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec /usr/bin/python3 -m harness "$@"
