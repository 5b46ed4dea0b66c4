"""ibgwd install-gateway: fetch, verify and install IB Gateway and IBC side by side by version.

IB Gateway and IBC are not redistributable, so the package cannot ship them: this command
downloads IB's standalone installer (or takes a local one with ``--from``) and IBC's release
zip (or ``--ibc-from``), checks their sha256 (a download without a checksum to compare with is
refused unless ``--allow-unverified``), runs IB's installer as an unprivileged user, installs
them under ``<prefix>/ibgateway/<ver>`` and ``<prefix>/ibc/<ver>`` and points the ``current``
symlinks at them; ``--list`` shows what is installed and ``--use`` points ``current`` back at
an older version. ibgwd's default settings (``TWS_PATH=/opt/ibgwd``,
``IB_GATEWAY_VERSION=current``, ``IBC_PATH=/opt/ibgwd/ibc/current``) follow those links.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from ibgwd.errors import EX_NOPERM, EX_OK, IbgwdError, InstallError
from ibgwd.install.fetch import DownloadError, Fetcher, UrllibFetcher, check_https
from ibgwd.install.installer import NotAnInstallerError, read_version
from ibgwd.install.plan import (
    DEFAULT_PREFIX,
    IBC_LATEST_API_URL,
    Arch,
    Channel,
    Component,
    Layout,
    Source,
    UnverifiedError,
    UsageError,
    arch_for_machine,
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
from ibgwd.install.runner import UnprivilegedInstallerRunner
from ibgwd.install.transaction import (
    ChecksumError,
    Hooks,
    Installed,
    InstallerRunner,
    NoHooks,
    check_unverified,
    current_version,
    installed_versions,
    run_install,
    use_version,
)

__all__ = [
    "ChecksumError",
    "Component",
    "DownloadError",
    "Installed",
    "Layout",
    "UnverifiedError",
    "current_version",
    "main",
    "run",
]

log = logging.getLogger(__name__)
PROG = "ibgwd install-gateway"
RESTART_HINT = (
    "Restart running gateways to use it: systemctl restart ibgwd 'ibgwd@*' "
    "(a restart is a new login: expect a 2FA prompt; do it at a quiet time)"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Download (or take local files), verify and install IB Gateway and IBC\n"
        "side by side by version, then point ibgwd at them. IB's installer runs as the\n"
        "unprivileged user ibgwd-install. IB publishes no checksum for its installer: a\n"
        "download is refused unless pinned with --sha256 or accepted with --allow-unverified.",
        epilog="examples:\n"
        "  ibgwd install-gateway --from ibgateway-stable-standalone-linux-x64.sh "
        "--ibc-from IBCLinux-3.24.1.zip\n"
        "  ibgwd install-gateway --sha256 HEX     # download IB's stable installer, pinned\n"
        "  ibgwd install-gateway --list\n"
        "  ibgwd install-gateway --use 10.30.1t   # roll back",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        help="IB Gateway version, the directory name (default: read from the installer)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from", dest="gateway_from", metavar="INSTALLER", help="local installer")
    source.add_argument(
        "--url",
        dest="gateway_url",
        metavar="URL",
        help="download the installer from this https URL",
    )
    p.add_argument("--sha256", dest="gateway_sha256", metavar="HEX", help="pin the installer")
    p.add_argument(
        "--arch",
        choices=[a.value for a in Arch],
        help="installer to download: x64 or arm (default: from uname -m)",
    )
    p.add_argument("--ibc-version", help="IBC release (default: the latest on GitHub)")
    p.add_argument("--ibc-from", metavar="ZIP", help="local IBCLinux-<ver>.zip")
    p.add_argument("--ibc-sha256", metavar="HEX", help="pin the IBC zip")
    p.add_argument(
        "--allow-unverified",
        action="store_true",
        help="install a download that no checksum vouches for (IB publishes none)",
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"default: {DEFAULT_PREFIX}")
    p.add_argument("--force", action="store_true", help="reinstall a version that is already there")
    p.add_argument("--list", action="store_true", help="list installed versions and exit")
    p.add_argument("--use", metavar="VERSION", help="point IB Gateway's current at VERSION")
    p.add_argument("--ibc-use", metavar="VERSION", help="point IBC's current at VERSION")
    return p


def _installer_version(path: Path) -> str | None:
    try:
        return read_version(path)
    except (NotAnInstallerError, OSError) as e:
        log.info("installer version unreadable path=%s error=%s", path, e)
        return None


def _gateway_source(args: argparse.Namespace, fetcher: Fetcher) -> Source:
    pinned = check_sha256("--sha256", args.gateway_sha256)
    if args.gateway_from is not None:
        path = Path(args.gateway_from)
        if not path.is_file():
            raise UsageError(f"--from: {args.gateway_from!r} is not a readable file")
        version = (
            args.gateway_version
            or _installer_version(path)
            or version_from_filename(Component.GATEWAY, path.name)
        )
        if version is None:
            raise UsageError(
                f"--version is required with --from {path.name!r}: it is not an install4j "
                "installer that carries its version, and its name does not say it; pass the "
                "version IB shows for the download, e.g. --version 10.37.1o"
            )
        return Source(
            Component.GATEWAY, check_version("--version", version), None, str(path), pinned
        )
    if args.gateway_url is not None:
        check_https(args.gateway_url, "--url")
        name = args.gateway_url.rsplit("/", 1)[-1]
        version = args.gateway_version or version_from_filename(Component.GATEWAY, name)
        source = Source(
            Component.GATEWAY,
            None if version is None else check_version("--version", version),
            args.gateway_url,
            None,
            pinned,
        )
        check_unverified(source, args.allow_unverified)
        return source
    arch = Arch(args.arch) if args.arch else arch_for_machine(platform.machine())
    channel = Channel(args.channel)
    url = gateway_installer_url(channel, arch)
    check_unverified(Source(Component.GATEWAY, None, url, None, pinned), args.allow_unverified)
    try:
        available = parse_gateway_version_json(fetcher.read_text(gateway_version_url(channel)))
    except ValueError as e:
        raise DownloadError(f"{gateway_version_url(channel)}: {e}") from e
    if args.gateway_version is not None and args.gateway_version != available:
        raise UsageError(
            f"--version: {args.gateway_version!r} is not available: IB only serves the current "
            f"build of each channel ({channel.value} is at {available}); use --from or --url "
            "for others"
        )
    return Source(Component.GATEWAY, available, url, None, pinned)


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
        how = "kept" if r.reused else ("verified" if r.verified else "not verified")
        print(f"{r.component.title} {r.version}: {r.path} ({how}), now current", file=out)
    settings = " ".join(f"{k}={v}" for k, v in layout.settings().items())
    print(f"ibgwd runs it with: {settings}", file=out)
    if str(layout.prefix) != DEFAULT_PREFIX:
        print("Set those in /etc/ibgwd/ibgwd.conf (they differ from the defaults).", file=out)
    print(RESTART_HINT, file=out)


def _list(layout: Layout, out: TextIO) -> None:
    for component in Component:
        current = current_version(layout, component)
        versions = installed_versions(layout, component)
        print(f"{component.title} ({layout.root(component)}):", file=out)
        if not versions:
            print("  (none installed)", file=out)
        for version in versions:
            mark = "*" if version == current else " "
            print(f"{mark} {version}{'  (current)' if mark == '*' else ''}", file=out)


def _use(layout: Layout, args: argparse.Namespace, out: TextIO) -> None:
    wanted = [(Component.GATEWAY, args.use), (Component.IBC, args.ibc_use)]
    for component, version in wanted:  # both checked before either link changes
        if version is None:
            continue
        check_version("--use" if component is Component.GATEWAY else "--ibc-use", version)
        have = installed_versions(layout, component)
        if version not in have:
            raise InstallError(
                f"{component.title} {version} is not installed under {layout.root(component)} "
                f"(installed: {', '.join(have) or 'none'}); nothing was changed"
            )
    for component, version in wanted:
        if version is None:
            continue
        old = use_version(layout, component, version)
        print(f"{component.title}: current -> {version} (was {old or 'unset'})", file=out)
    print(RESTART_HINT, file=out)


_INSTALL_ONLY = ("gateway_from", "gateway_url", "gateway_sha256", "ibc_from", "ibc_sha256")


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
    if args.list or args.use or args.ibc_use:
        clash = any(getattr(args, k) for k in _INSTALL_ONLY)
        if clash or (args.list and (args.use or args.ibc_use)):
            raise UsageError(
                "--list, --use and --ibc-use do not install: use them alone (with --prefix)"
            )
        if args.list:
            _list(layout, out)
        else:
            _use(layout, args, out)
        return []
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
            allow_unverified=args.allow_unverified,
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
    args = list(sys.argv[1:] if argv is None else argv)
    read_only = "--list" in args or "-h" in args or "--help" in args
    if os.geteuid() != 0 and not read_only:
        print(
            f"{PROG}: error: must run as root: it installs under the prefix and runs IB's "
            "installer as the unprivileged user ibgwd-install",
            file=sys.stderr,
        )
        return EX_NOPERM
    try:
        run(
            args,
            fetcher=UrllibFetcher(),
            runner=UnprivilegedInstallerRunner(),
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
