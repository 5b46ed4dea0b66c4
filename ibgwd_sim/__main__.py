"""Command line of the simulation package: ``python -m ibgwd_sim install --prefix DIR``."""

from __future__ import annotations

import sys

from ibgwd_sim import install


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] != "install":
        sys.stderr.write("usage: python -m ibgwd_sim install --prefix DIR [options]\n")
        return 2
    return install.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
