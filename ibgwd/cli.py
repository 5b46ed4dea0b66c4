"""The `ibgwd` command line: parse arguments, call the right entry point, map errors to exits."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pwd
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from ibgwd import __version__, advice, errors, names
from ibgwd.config.load import conffile_path, load_settings
from ibgwd.config.model import Settings
from ibgwd.errors import ConfigError, IbgwdError, Problem
from ibgwd.render.render import render_files
from ibgwd.render.write import redacted_text, write_files

log = logging.getLogger(__name__)

FORWARDED = ("ctl", "install-gateway")

DESCRIPTION = """\
Run Interactive Brokers Gateway unattended under systemd.

ibgwd reads its settings from <config-dir>/ibgwd.conf (or <config-dir>/<instance>.conf),
then the environment, then NAME_FILE files, then systemd credentials in
$CREDENTIALS_DIRECTORY, and renders IBC's config.ini and the Gateway's jts.ini from them.
The settings keep the names of the ib-gateway-docker image (TWS_USERID, TRADING_MODE, ...);
see docs/configuration.md or the annotated /etc/ibgwd/ibgwd.conf."""

EPILOG = """\
examples:
  ibgwd check-config                        validate /etc/ibgwd/ibgwd.conf + environment
  ibgwd check-config --instance live        validate /etc/ibgwd/live.conf
  ibgwd --config-dir ./etc check-config     use another configuration directory
  ibgwd render --dry-run                    show config.ini/jts.ini, secrets masked
  ibgwd render --output /tmp/ibgwd          write config.ini under /tmp/ibgwd/ibc/
  ibgwd run --instance paper                run the daemon (what ibgwd@paper.service does)
  ibgwd ctl status                          ask the running daemon over D-Bus
  ibgwd install-gateway --help              install IB Gateway and IBC

exit status:
  0 success, 64 usage error, 78 invalid configuration (every problem is printed on
  stderr, one per line), 73 cannot write a file, 69/75 service unavailable/temporary."""


def _instance_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instance",
        default=names.DEFAULT_INSTANCE,
        metavar="NAME",
        help=f"instance name: {names.INSTANCE_ACCEPTED} (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ibgwd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=Path(names.CONFIG_DIR),
        metavar="DIR",
        help="directory holding ibgwd.conf and <instance>.conf (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check-config",
        help="validate the settings and print every problem",
        description="Validate the settings of one instance from every source. Prints every "
        "problem at once on stderr (setting, bad value unless secret, what is accepted) and "
        "exits 78, or prints a summary and exits 0. Writes nothing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  TRADING_MODE=both ibgwd check-config --instance dual",
    )
    _instance_arg(check)

    render = commands.add_parser(
        "render",
        help="write IBC's config.ini and the Gateway's jts.ini",
        description="Render config-<mode>.ini (mode 0600) under <output>/ibc/ for each gateway "
        "and jts.ini in each gateway's TWS_SETTINGS_PATH when it does not exist yet. Files "
        f"are owned by the user {names.GATEWAY_USER!r} when it exists. With CUSTOM_CONFIG=yes "
        "nothing is written.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ibgwd render --dry-run\n  ibgwd render --instance live "
        "--output /tmp/ibgwd-live",
    )
    _instance_arg(render)
    render.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help=f"runtime directory to render into (default: {names.RUNTIME_ROOT}/<instance>)",
    )
    render.add_argument(
        "--dry-run",
        action="store_true",
        help="print the files with secrets masked instead of writing them",
    )

    run = commands.add_parser(
        "run",
        help="run the daemon in the foreground (as systemd does)",
        description="Run the daemon of one instance in the foreground. This is what "
        "ibgwd.service and ibgwd@.service start.",
    )
    _instance_arg(run)

    commands.add_parser(
        "ctl",
        help="control a running daemon over D-Bus (see: ibgwd ctl --help)",
        add_help=False,
    )
    commands.add_parser(
        "install-gateway",
        help="download, verify and install IB Gateway and IBC (see: ibgwd install-gateway --help)",
        add_help=False,
    )
    return parser


def _split_forwarded(argv: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """For `ctl`/`install-gateway`, split argv into (global part, forwarded rest)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config-dir":
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        if arg in FORWARDED:
            return list(argv[: i + 1]), list(argv[i + 1 :])
        return None
    return None


def _print_problems(error: ConfigError, stderr: TextIO) -> None:
    for problem in error.problems:
        print(f"ibgwd: {problem}", file=stderr)


def _load(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    if not names.is_valid_instance(args.instance):
        raise ConfigError([Problem("--instance", args.instance, names.INSTANCE_ACCEPTED)])
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    return load_settings(
        args.instance,
        config_dir=args.config_dir,
        environ=environ,
        credentials_dir=Path(credentials) if credentials else None,
    )


def _summary(settings: Settings) -> str:
    gateways = ", ".join(
        f"{g.mode.value} (api {g.api_port}, relay {g.relay_port or 'off'}, "
        f"command {g.command_port})"
        for g in settings.gateways
    )
    return (
        f"instance={settings.instance} trading_mode={settings.trading_mode.value} "
        f"gateways: {gateways}"
    )


def _gateway_owner() -> tuple[int | None, int | None]:
    try:
        entry = pwd.getpwnam(names.GATEWAY_USER)
    except KeyError:
        return None, None
    return entry.pw_uid, entry.pw_gid


def _check_config(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    settings = _load(args, environ)
    render_files(settings, runtime_dir=Path(names.InstanceNames(settings.instance).runtime_dir))
    for warning in advice.warnings(settings):
        log.warning("%s", warning)
    print(f"ibgwd: configuration valid: {_summary(settings)}", file=out)
    print(f"ibgwd: conffile {conffile_path(settings.instance, args.config_dir)}", file=out)
    return errors.EX_OK


def _render(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    settings = _load(args, environ)
    runtime_dir = args.output or Path(names.InstanceNames(settings.instance).runtime_dir)
    files = render_files(settings, runtime_dir=runtime_dir)
    if not files:
        print("ibgwd: CUSTOM_CONFIG=yes: nothing rendered", file=out)
        return errors.EX_OK
    if args.dry_run:
        for file in files:
            when = " (only if missing)" if file.only_if_missing else ""
            print(f"### {file.path} mode {file.mode:04o}{when}", file=out)
            print(redacted_text(file), file=out, end="")
        return errors.EX_OK
    uid, gid = _gateway_owner()
    try:
        written = write_files(files, uid=uid, gid=gid)
    except OSError as e:
        print(f"ibgwd: cannot write {e.filename or args.output}: {e.strerror or e}", file=err)
        return errors.EX_CANTCREAT
    for file in files:
        state = "written" if file.path in written else "kept (exists)"
        print(f"ibgwd: {file.path} {state}", file=out)
    return errors.EX_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Entry point of `ibgwd`; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    forwarded = _split_forwarded(args_list)
    parser = build_parser()
    try:
        args = parser.parse_args(forwarded[0] if forwarded else args_list)
        if forwarded is not None:
            return _run_forwarded(args.command, forwarded[1])
        if args.command == "check-config":
            with _warnings_to(err):
                return _check_config(args, env, out)
        if args.command == "render":
            with _warnings_to(err):
                return _render(args, env, out, err)
        if not names.is_valid_instance(args.instance):
            raise ConfigError([Problem("--instance", args.instance, names.INSTANCE_ACCEPTED)])
        from ibgwd import app

        return app.main(args.instance, args.config_dir)
    except SystemExit as e:  # argparse: --help/--version (0) or a usage error (2 → 64)
        if e.code is None or e.code == 0:
            return errors.EX_OK
        return errors.EX_USAGE if e.code == 2 or not isinstance(e.code, int) else e.code
    except ConfigError as e:
        _print_problems(e, err)
        return e.exit_code
    except IbgwdError as e:
        print(f"ibgwd: {e}", file=err)
        return e.exit_code


@contextlib.contextmanager
def _warnings_to(stream: TextIO) -> Iterator[None]:
    """Show warnings of the one-shot commands on stderr as `ibgwd: warning: ...`."""
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("ibgwd: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _run_forwarded(command: str, rest: list[str]) -> int:
    if command == "ctl":
        from ibgwd import ctl

        return ctl.main(rest)
    from ibgwd import install

    return install.main(rest)
