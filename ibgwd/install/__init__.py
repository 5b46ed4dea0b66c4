"""ibgwd install-gateway: fetch, verify and install IB Gateway and IBC side by side by version.

IB Gateway and IBC are not redistributable, so the package cannot ship them: this command
downloads IB's standalone installer (or takes a local one with ``--from``) and IBC's release
zip (or ``--ibc-from``), checks their sha256, installs them under ``<prefix>/ibgateway/<ver>``
and ``<prefix>/ibc/<ver>`` and points the ``current`` symlinks at them. ibgwd's default
settings (``TWS_PATH=/opt/ibgwd``, ``IB_GATEWAY_VERSION=current``,
``IBC_PATH=/opt/ibgwd/ibc/current``) follow those links.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from ibgwd.errors import EX_OK, IbgwdError, InstallError
from ibgwd.install.fetch import DownloadError, Fetcher, UrllibFetcher
from ibgwd.install.plan import (
    DEFAULT_PREFIX,
    IBC_LATEST_API_URL,
    Channel,
    Component,
    Layout,
    Source,
    UsageError,
    check_prefix,
    check_sha256,
    check_version,
    gateway_installer_url,
    gateway_version_url,
    ibc_zip_url,
    parse_gateway_version_json,
    parse_github_latest_tag,
    version_from_filename,
)
from ibgwd.install.transaction import (
    ChecksumError,
    Hooks,
    Installed,
    InstallerRunner,
    NoHooks,
    ShellInstallerRunner,
    current_version,
    run_install,
)

__all__ = [
    "ChecksumError",
    "Component",
    "DownloadError",
    "Installed",
    "Layout",
    "current_version",
    "main",
    "run",
]

log = logging.getLogger(__name__)
PROG = "ibgwd install-gateway"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Download (or take local files), verify and install IB Gateway and IBC "
        "side by side by version, then point ibgwd at them.",
    )
    p.add_argument(
        "--channel",
        choices=[c.value for c in Channel],
        default=Channel.STABLE.value,
        help="IB release channel to download (default: stable)",
    )
    p.add_argument(
        "--version",
        dest="gateway_version",
        help="IB Gateway version: the directory name; with a download it must match the channel",
    )
    p.add_argument("--from", dest="gateway_from", metavar="INSTALLER", help="local installer")
    p.add_argument("--sha256", dest="gateway_sha256", metavar="HEX", help="pin the installer")
    p.add_argument("--ibc-version", help="IBC release (default: the latest on GitHub)")
    p.add_argument("--ibc-from", metavar="ZIP", help="local IBCLinux-<ver>.zip")
    p.add_argument("--ibc-sha256", metavar="HEX", help="pin the IBC zip")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"default: {DEFAULT_PREFIX}")
    p.add_argument("--force", action="store_true", help="reinstall a version that is already there")
    return p


def _gateway_source(args: argparse.Namespace, fetcher: Fetcher) -> Source:
    pinned = check_sha256("--sha256", args.gateway_sha256)
    if args.gateway_from is not None:
        path = Path(args.gateway_from)
        if not path.is_file():
            raise UsageError(f"--from: {args.gateway_from!r} is not a readable file")
        version = args.gateway_version or version_from_filename(Component.GATEWAY, path.name)
        if version is None:
            raise UsageError(
                f"--version is required with --from {path.name!r}: the file name does not "
                "carry it (accepted names: ibgateway-<ver>-standalone-linux-x64.sh)"
            )
        return Source(
            Component.GATEWAY, check_version("--version", version), None, str(path), pinned
        )
    channel = Channel(args.channel)
    try:
        available = parse_gateway_version_json(fetcher.read_text(gateway_version_url(channel)))
    except ValueError as e:
        raise DownloadError(f"{gateway_version_url(channel)}: {e}") from e
    if args.gateway_version is not None and args.gateway_version != available:
        raise UsageError(
            f"--version: {args.gateway_version!r} is not available: IB only serves the current "
            f"build of each channel ({channel.value} is at {available}); use --from for others"
        )
    return Source(Component.GATEWAY, available, gateway_installer_url(channel), None, pinned)


def _ibc_version_in_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read("version").decode("ascii", "replace").strip() or None
    except (KeyError, zipfile.BadZipFile, OSError):
        return None


def _ibc_source(args: argparse.Namespace, fetcher: Fetcher) -> Source:
    pinned = check_sha256("--ibc-sha256", args.ibc_sha256)
    if args.ibc_from is not None:
        path = Path(args.ibc_from)
        if not path.is_file():
            raise UsageError(f"--ibc-from: {args.ibc_from!r} is not a readable file")
        version = (
            args.ibc_version
            or version_from_filename(Component.IBC, path.name)
            or _ibc_version_in_zip(path)
        )
        if version is None:
            raise UsageError(
                f"--ibc-version is required with --ibc-from {path.name!r}: neither the file "
                "name (IBCLinux-<ver>.zip) nor a 'version' file in the zip carries it"
            )
        return Source(
            Component.IBC, check_version("--ibc-version", version), None, str(path), pinned
        )
    if args.ibc_version is not None:
        version = check_version("--ibc-version", args.ibc_version)
    else:
        try:
            version = parse_github_latest_tag(fetcher.read_text(IBC_LATEST_API_URL))
        except ValueError as e:
            raise DownloadError(f"{IBC_LATEST_API_URL}: {e}") from e
    url = ibc_zip_url(version)
    return Source(Component.IBC, version, url, None, pinned, checksum_url=url + ".sha256")


def _summary(layout: Layout, results: list[Installed], out: TextIO) -> None:
    for r in results:
        how = "kept" if r.reused else ("verified" if r.verified else "unverified")
        print(f"{r.component.title} {r.version}: {r.path} ({how}), now current", file=out)
    settings = " ".join(f"{k}={v}" for k, v in layout.settings().items())
    print(f"ibgwd runs it with: {settings}", file=out)
    if str(layout.prefix) != DEFAULT_PREFIX:
        print("Set those in /etc/ibgwd/ibgwd.conf (they differ from the defaults).", file=out)
    print("Restart running gateways to use it: systemctl restart 'ibgwd*.service'", file=out)


def run(
    argv: Sequence[str],
    *,
    fetcher: Fetcher,
    runner: InstallerRunner,
    hooks: Hooks,
    out: TextIO,
) -> list[Installed]:
    """Parse ``argv`` and install; raises IbgwdError (or a subclass) on any failure."""
    args = _parser().parse_args(list(argv))
    layout = Layout(check_prefix(args.prefix))
    sources = [_gateway_source(args, fetcher), _ibc_source(args, fetcher)]
    old_umask = os.umask(0o022)
    try:
        results = run_install(
            layout,
            sources,
            fetcher=fetcher,
            runner=runner,
            hooks=hooks,
            force=args.force,
            report=lambda line: print(line, file=out, flush=True),
        )
    except OSError as e:
        raise InstallError(
            f"{e.filename or layout.prefix}: {e.strerror}; nothing was installed"
        ) from e
    finally:
        os.umask(old_umask)
    _summary(layout, results, out)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ibgwd install-gateway ARGS`` (``argv`` excludes the subcommand)."""
    try:
        run(
            sys.argv[1:] if argv is None else argv,
            fetcher=UrllibFetcher(),
            runner=ShellInstallerRunner(),
            hooks=NoHooks(),
            out=sys.stdout,
        )
    except IbgwdError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was installed", file=sys.stderr)
        return 130
    return EX_OK
