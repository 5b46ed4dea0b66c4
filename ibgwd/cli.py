"""The `ibgwd` command line: parse arguments, call the right entry point, map errors to exits."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pwd
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from ibgwd import __version__, advice, errors, names
from ibgwd.config.load import conffile_path, load_settings
from ibgwd.config.model import Settings
from ibgwd.errors import ConfigError, IbgwdError, Problem
from ibgwd.render.render import RenderedFile, render_files
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
  ibgwd check-config --show                 every effective value and its origin
  ibgwd render --output /tmp/ibgwd          write every file under /tmp/ibgwd
  ibgwd run --instance paper                run the daemon (what ibgwd@paper.service does)
  ibgwd ctl status                          ask the running daemon over D-Bus
  ibgwd install-gateway --help              install IB Gateway and IBC

exit status:
  0 success, 64 usage error, 78 invalid configuration (every problem is printed on
  stderr, one per line), 73 cannot write a file, 77 the conffile is not readable,
  69/75 service unavailable/temporary."""


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
        description="Validate the settings of one instance from every source, as the "
        "daemon will see them: credentials the instance's unit loads (LoadCredential[Encrypted]=, "
        "SetCredential[Encrypted]=) count as set even from a shell, and the paths the settings "
        "name are checked (IBC's launcher, the Gateway install, ssh keys, x11vnc when VNC is "
        "on). Prints every problem at once on stderr (setting, bad value unless secret, what is "
        "accepted) and exits 78, or prints a summary and exits 0. Writes nothing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  TRADING_MODE=both ibgwd check-config --instance dual\n"
        "  ibgwd check-config --show          every effective value and where it comes from\n\n"
        "exit status:\n  0 valid, 64 bad usage, 77 the conffile is not readable (run as root), "
        "78 invalid",
    )
    _instance_arg(check)
    check.add_argument(
        "--show",
        action="store_true",
        help="list every effective value with its origin (conffile, environment, NAME_FILE, "
        "credential, default); secrets are redacted",
    )

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
        help="write every file under DIR instead: config-<mode>.ini in DIR/ibc/, and jts.ini "
        "at DIR/<its absolute path>; nothing outside DIR is touched, nothing is chown'ed "
        f"(default: the instance's {names.RUNTIME_ROOT}/<instance> and settings directories)",
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


def _load(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    unit_credentials: Mapping[str, tuple[str, str]] | None = None,
) -> Settings:
    if not names.is_valid_instance(args.instance):
        raise UsageError(str(Problem("--instance", args.instance, names.INSTANCE_ACCEPTED)))
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    return load_settings(
        args.instance,
        config_dir=args.config_dir,
        environ=environ,
        credentials_dir=Path(credentials) if credentials else None,
        unit_credentials=unit_credentials,
    )


class UsageError(Exception):
    """Bad command-line usage: exit 64 with the message."""


def _conffile_state(path: Path) -> str:
    """ "ok", "missing" or a reason it cannot be read."""
    try:
        with path.open("rb"):
            return "ok"
    except FileNotFoundError:
        return "missing"
    except PermissionError:
        return "permission denied"
    except IsADirectoryError:
        return "it is a directory"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


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


def _unit_credentials(
    instance: str, environ: Mapping[str, str], out: TextIO, err: TextIO
) -> tuple[dict[str, tuple[str, str]], list[Problem]]:
    """From a shell (no $CREDENTIALS_DIRECTORY): what the instance's unit will load."""
    if environ.get("CREDENTIALS_DIRECTORY"):
        return {}, []
    from ibgwd.config import spec, unitcreds

    service = names.InstanceNames(instance).service
    wanted = {s.credential_name: s.name for s in spec.SETTINGS}
    resolved = unitcreds.resolve(unitcreds.unit_credentials(service), wanted, service)
    values: dict[str, tuple[str, str]] = {}
    problems: list[Problem] = []
    for setting, r in resolved.items():
        if r.problem:
            problems.append(Problem(setting, "<credential>", f"a working {r.origin}", r.problem))
            continue
        values[setting] = (r.value, r.origin)
        how = "encrypted: counted as set" if r.value == unitcreds.ENCRYPTED_PLACEHOLDER else "read"
        print(f"ibgwd: {setting}: from {r.origin} ({how})", file=out)
    return values, problems


def _show(
    args: argparse.Namespace,
    environ: Mapping[str, str],
    unit_credentials: Mapping[str, tuple[str, str]],
    out: TextIO,
) -> None:
    from ibgwd.config import sources, spec

    credentials = environ.get("CREDENTIALS_DIRECTORY")
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the warnings were printed by the check itself
    try:
        raw = sources.gather(
            conffile=conffile_path(args.instance, args.config_dir),
            environ=environ,
            credentials_dir=Path(credentials) if credentials else None,
            unit_credentials=unit_credentials,
        )
    finally:
        logging.disable(previous)
    print(f"# effective settings of instance {args.instance} (secrets redacted)", file=out)
    rows = []
    for setting in spec.SETTINGS:
        if setting.name in raw.values:
            value, origin = raw.values[setting.name], raw.origins.get(setting.name, "?")
        else:
            value, origin = setting.default, "default"
            if not value and setting.default_doc:
                origin = f"default: {setting.default_doc.strip('`')}"
        if setting.secret and value:
            value = sources.REDACTED
        rows.append((f"{setting.name}={_show_quote(value)}", origin))
    width = max(len(r[0]) for r in rows)
    for text, origin in rows:
        print(f"{text:<{width}}  # {origin}", file=out)


def _show_quote(value: str) -> str:
    if value == "" or all(c.isalnum() or c in "._/:-,@+<>" for c in value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"


def _check_config(
    args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO
) -> int:
    from ibgwd.config.checks import check_paths

    if not names.is_valid_instance(args.instance):
        raise UsageError(str(Problem("--instance", args.instance, names.INSTANCE_ACCEPTED)))
    conffile = conffile_path(args.instance, args.config_dir)
    state = _conffile_state(conffile)
    if state not in ("ok", "missing"):
        print(f"ibgwd: cannot read {conffile}: {state} (run as root)", file=err)
        return errors.EX_NOPERM
    missing: list[Problem] = []
    if state == "missing":
        where = "" if args.config_dir.is_dir() else f"; {args.config_dir} does not exist"
        note = f"no conffile {conffile}{where}: settings come from the environment only"
        print(f"ibgwd: warning: {note}", file=err)
        missing.append(
            Problem(
                str(conffile),
                "",
                "an existing conffile (check --instance and --config-dir)",
                "missing",
            )
        )
    unit_values, credential_problems = _unit_credentials(args.instance, environ, out, err)
    if args.show:
        _show(args, environ, unit_values, out)
    try:
        settings = _load(args, environ, unit_values)
    except ConfigError as e:
        raise ConfigError([*missing, *credential_problems, *e.problems]) from None
    problems = [*credential_problems, *check_paths(settings)]
    if problems:
        raise ConfigError(problems)
    render_files(settings, runtime_dir=Path(names.InstanceNames(settings.instance).runtime_dir))
    for warning in advice.warnings(settings):
        log.warning("%s", warning)
    print(f"ibgwd: configuration valid: {_summary(settings)}", file=out)
    print(f"ibgwd: conffile {conffile}" + (" (missing)" if missing else ""), file=out)
    return errors.EX_OK


def _render(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    settings = _load(args, environ)
    runtime_dir = args.output or Path(names.InstanceNames(settings.instance).runtime_dir)
    files = render_files(settings, runtime_dir=runtime_dir)
    if args.output is not None:
        files = tuple(_under(file, args.output) for file in files)
    if not files:
        print("ibgwd: CUSTOM_CONFIG=yes: nothing rendered", file=out)
        return errors.EX_OK
    if args.dry_run:
        for file in files:
            when = " (only if missing)" if file.only_if_missing else ""
            print(f"### {file.path} mode {file.mode:04o}{when}", file=out)
            print(redacted_text(file), file=out, end="")
        return errors.EX_OK
    uid, gid = _gateway_owner() if args.output is None else (None, None)
    try:
        written = write_files(files, uid=uid, gid=gid)
    except OSError as e:
        print(f"ibgwd: cannot write {e.filename or args.output}: {e.strerror or e}", file=err)
        return errors.EX_CANTCREAT
    for file in files:
        state = "written" if file.path in written else "kept (exists)"
        print(f"ibgwd: {file.path} {state}", file=out)
    return errors.EX_OK


def _under(file: RenderedFile, root: Path) -> RenderedFile:
    """The file moved under `root` (DESTDIR-style) unless it is there already."""
    if file.path.is_relative_to(root):
        return file
    return replace(file, path=root / file.path.relative_to(file.path.anchor))


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
                return _check_config(args, env, out, err)
        if args.command == "render":
            with _warnings_to(err):
                return _render(args, env, out, err)
        if not names.is_valid_instance(args.instance):
            raise UsageError(str(Problem("--instance", args.instance, names.INSTANCE_ACCEPTED)))
        from ibgwd import app

        return app.main(args.instance, args.config_dir)
    except SystemExit as e:  # argparse: --help/--version (0) or a usage error (2 → 64)
        if e.code is None or e.code == 0:
            return errors.EX_OK
        return errors.EX_USAGE if e.code == 2 or not isinstance(e.code, int) else e.code
    except UsageError as e:
        print(f"ibgwd: {e}", file=err)
        return errors.EX_USAGE
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
