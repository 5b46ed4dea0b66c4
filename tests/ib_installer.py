"""Build a simulated IB Gateway installer and an IBC release zip for install-gateway's tests.

IB's installer (``ibgateway-<channel>-standalone-linux-<x64|arm>.sh``) is an install4j
self-extracting shell script. What install-gateway relies on, and what this simulation keeps:

- The preamble cuts its trailing gzip'd tar off itself with the line
  ``tail -c <N> "$prg_dir/${progname}" > sfx_archive.tar.gz`` (public install4j unpackers read
  N from exactly that line, e.g. nixpkgs' ``ib-tws`` derivation:
  ``sed -nE 's/^tail -c ([0-9]+).*/\\1/p'``).
- That tar holds ``i4jparams.conf``, whose ``<variable name="buildInfo" value="Build 10.30.1t,
  <date>"/>`` carries the version (nixpkgs' ib-tws updater: ``grep buildInfo
  *.dir/i4jparams.conf | sed -E 's/.*name="buildInfo" value="Build (\\S+) .*/\\1/'``).
- Unattended mode is ``-q -dir DIR`` (gnzsnz/ib-gateway-docker ``Dockerfile.template``); the
  installer unpacks into ``$INSTALL4J_TEMP`` (else the current directory / /tmp) and writes
  ``DIR/.install4j/inst_jre.cfg`` with the absolute path of its bundled JRE.

The installed tree is the simulated gateway of ``ibgwd_sim`` (``jars/``, ``ibgateway.vmoptions``,
``.install4j/``, ``jre/bin/java`` launching ``ibgwd_sim.gateway``), so ibgwd runs it like the
real one. The simulation also records ``id -u`` in ``DIR/.install4j/installer.uid``: tests
check that IB's installer never runs as root.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import zipfile
from pathlib import Path

from ibgwd_sim.install import install as sim_install

PARAMS = """<?xml version="1.0" encoding="UTF-8"?>
<config version="10.0.8" buildTime="1730736655000">
  <general applicationName="IB Gateway {major}" applicationVersion="{major}"
           mediaName="ibgateway-standalone-linux" mediaFileId="1">
    <variables>
      <variable name="majorVersion" value="{major_digits}" />
      <variable name="buildInfo" value="Build {version}, Nov 4, 2024 3:10:55 PM" />
    </variables>
  </general>
</config>
"""

PREAMBLE = """#!/bin/sh
# Simulated IB Gateway installer {version} (ibgwd tests), shaped like IB's install4j one.
progname=`basename "$0"`
prg_dir=`dirname "$0"`
quiet=0 dir=
while [ $# -gt 0 ]; do
    case "$1" in
        -q) quiet=1 ;;
        -dir) shift; dir=$1 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$quiet" = 1 ] && [ -n "$dir" ] || {{ echo "usage: $0 -q -dir DIR" >&2; exit 2; }}
sfx_dir_name="${{INSTALL4J_TEMP:-.}}/${{progname}}.$$.dir"
mkdir "$sfx_dir_name" || {{ echo "cannot create $sfx_dir_name" >&2; exit 1; }}
trap 'rm -rf "$sfx_dir_name"' EXIT
old_pwd=`pwd`
cd "$sfx_dir_name"
tail -c {length:012d} "$prg_dir/${{progname}}" > sfx_archive.tar.gz 2> /dev/null
gunzip -c sfx_archive.tar.gz | tar xf - || {{ echo "the installer is corrupt" >&2; exit 1; }}
cd "$old_pwd"
echo "Unpacking IB Gateway {version} into $dir ..."
mkdir -p "$dir" && cp -R "$sfx_dir_name/payload/." "$dir/" || exit 1
mkdir -p "$dir/.install4j"
echo "$dir/jre" > "$dir/.install4j/inst_jre.cfg"
id -u > "$dir/.install4j/installer.uid"
{hook}
echo "Finishing installation..."
exit 0
"""


def _major(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _sfx(version: str, payload: Path | None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        params = PARAMS.format(
            version=version, major=_major(version), major_digits=_major(version).replace(".", "")
        ).encode()
        info = tarfile.TarInfo("i4jparams.conf")
        info.size = len(params)
        tar.addfile(info, io.BytesIO(params))
        if payload is not None:
            tar.add(payload, arcname="payload")
        else:
            info = tarfile.TarInfo("payload/jars")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
    return buf.getvalue()


def build_installer(path: Path, version: str, *, hook: str = "", simulated: bool = True) -> Path:
    """Write a simulated installer for ``version`` at ``path``; ``hook`` is shell run last.

    ``simulated``: install the simulated gateway (a runnable tree); else only ``jars/``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        payload = None
        if simulated:
            sim = sim_install(Path(tmp), gateway_version=version)
            payload = sim.program_path
            (payload / ".install4j" / "inst_jre.cfg").unlink()
        sfx = _sfx(version, payload)
    script = PREAMBLE.format(version=version, length=len(sfx), hook=hook).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(script + sfx)
    path.chmod(0o755)
    return path


def build_ibc_zip(path: Path, version: str, *, modes: dict[str, int] | None = None) -> Path:
    """IBC's release zip around the simulated IBC (``scripts/ibcstart.sh`` runs ibgwd_sim).

    ``modes`` adds members with the given unix modes (e.g. ``{"evil.sh": 0o4777}``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        ibc = sim_install(Path(tmp), ibc_version=version).ibc_path
        with zipfile.ZipFile(path, "w") as z:
            for file in sorted(p for p in ibc.rglob("*") if p.is_file()):
                name = str(file.relative_to(ibc))
                if name == "simulation.conf":
                    continue  # not part of IBC: the simulation's defaults apply
                info = zipfile.ZipInfo(name)
                # IBC's release zip stores its scripts without the executable bit.
                info.external_attr = 0o100644 << 16
                z.writestr(info, file.read_bytes())
            for name, mode in (modes or {}).items():
                info = zipfile.ZipInfo(name)
                info.external_attr = (0o100000 | mode) << 16
                z.writestr(info, "#!/bin/sh\n")
    return path
