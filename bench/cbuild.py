"""Compile the C echo backend and round-trip client once per source version, outside the tree."""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path(__file__).resolve().with_name("c")
CACHE = Path("/var/tmp/ibgwd-bench")


@dataclass(frozen=True)
class Tools:
    echosrv: Path
    rtclient: Path


def build(cache: Path = CACHE) -> Tools:
    """gcc -O2 both programs into cache/<hash of the sources>/ (reused when unchanged)."""
    digest = hashlib.sha256()
    for name in ("echosrv.c", "rtclient.c"):
        digest.update((SOURCES / name).read_bytes())
    out = cache / digest.hexdigest()[:16]
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o755)
    for parent in (cache,):
        parent.chmod(0o755)
    tools = Tools(echosrv=out / "echosrv", rtclient=out / "rtclient")
    for binary in (tools.echosrv, tools.rtclient):
        if not binary.exists():
            tmp = binary.with_suffix(".tmp")
            subprocess.run(
                [
                    "gcc",
                    "-O2",
                    "-Wall",
                    "-pthread",
                    "-o",
                    str(tmp),
                    str(SOURCES / f"{binary.name}.c"),
                ],
                check=True,
            )
            tmp.replace(binary)
    return tools
