"""What IB's installer says about itself, read without running it.

IB's standalone installer is an install4j self-extracting shell script: a POSIX-shell preamble,
the payload, and at the end a gzip'd tar that the preamble cuts off with the line
``tail -c <N> "$prg_dir/${progname}" > sfx_archive.tar.gz``. That tar holds install4j's
``i4jparams.conf`` (XML), whose variable ``buildInfo`` reads ``Build 10.30.1t, <date>`` — the
version IB's own version.json calls ``buildVersion`` and the name of the directory the Gateway
is installed in. This module reads that, with bounded reads and nothing written to disk.
"""

from __future__ import annotations

import re
import tarfile
from pathlib import Path
from typing import BinaryIO

PREAMBLE_MAX_BYTES = 256 << 10  # install4j's preamble is about 20 KiB
PARAMS_MAX_BYTES = 8 << 20
PARAMS_NAME = "i4jparams.conf"

_SFX_LINE = re.compile(rb"^[ \t]*tail -c (\d+) [^\n]*sfx_archive\.tar\.gz", re.M)
_BUILD_INFO = re.compile(
    r"""<variable\s+name="buildInfo"\s+value="\s*Build\s+([0-9]+(?:\.[0-9]+)*[A-Za-z]?)"""
)
_SYS_VERSION = re.compile(r"""name="sys\.version"\s+value="([0-9][A-Za-z0-9.]*)\"""")


class NotAnInstallerError(ValueError):
    """The file is not an install4j installer, or it does not carry a version."""


def sfx_length(preamble: bytes) -> int:
    """The byte length of the trailing archive, from the preamble's ``tail -c N`` line."""
    match = _SFX_LINE.search(preamble)
    if match is None:
        raise NotAnInstallerError(
            "no install4j 'tail -c N ... sfx_archive.tar.gz' line in the first "
            f"{PREAMBLE_MAX_BYTES // 1024} KiB"
        )
    return int(match.group(1))


def version_from_params(text: str) -> str:
    """``10.30.1t`` from i4jparams.conf's ``buildInfo`` (else install4j's ``sys.version``)."""
    for pattern in (_BUILD_INFO, _SYS_VERSION):
        match = pattern.search(text)
        if match:
            return match.group(1)
    raise NotAnInstallerError(f"{PARAMS_NAME} has neither a buildInfo nor a sys.version")


def _params_from_sfx(f: BinaryIO) -> str:
    try:
        with tarfile.open(fileobj=f, mode="r|gz") as archive:
            for member in archive:
                if member.isfile() and Path(member.name).name == PARAMS_NAME:
                    if member.size > PARAMS_MAX_BYTES:
                        raise NotAnInstallerError(f"{PARAMS_NAME} is larger than 8 MiB")
                    extracted = archive.extractfile(member)
                    assert extracted is not None
                    return extracted.read(PARAMS_MAX_BYTES).decode("utf-8", "replace")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise NotAnInstallerError(f"its trailing archive cannot be read ({e})") from e
    raise NotAnInstallerError(f"its trailing archive has no {PARAMS_NAME}")


def read_version(path: Path) -> str:
    """The Gateway version an install4j installer file carries; NotAnInstallerError if none."""
    with path.open("rb") as f:
        preamble = f.read(PREAMBLE_MAX_BYTES)
        length = sfx_length(preamble)
        size = path.stat().st_size
        if not 0 < length < size:
            raise NotAnInstallerError(f"its archive length {length} does not fit the file")
        f.seek(size - length)
        return version_from_params(_params_from_sfx(f))
