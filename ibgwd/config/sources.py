"""Where raw setting values come from: conffile, environment, NAME_FILE files, credentials.

Precedence, lowest to highest: conffile → environment → NAME_FILE → systemd credential.
Every problem is collected, never raised one by one; secrets never reach a Problem.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ibgwd.config import spec
from ibgwd.errors import Problem

log = logging.getLogger(__name__)

REDACTED = "<redacted>"
MAX_VALUE_FILE_BYTES = 65536
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class RawValues:
    """Raw strings per setting name plus the problems met while reading them."""

    values: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # name -> where it came from
    problems: list[Problem] = field(default_factory=list)


def _known_name(name: str) -> bool:
    return name in spec.BY_NAME or (name.endswith("_FILE") and name[:-5] in spec.BY_NAME)


def parse_conffile(text: str, origin: str) -> tuple[dict[str, str], list[Problem]]:
    """Parse KEY=VALUE lines like systemd's EnvironmentFile= (pure).

    `#`/`;` start comment lines; values may be wrapped in single quotes (literal) or double
    quotes (backslash escapes `\\"`, `\\\\`, `\\$`, `` \\` ``); an unquoted value runs to the
    end of the line with surrounding whitespace removed. There are no inline comments, so
    `#` inside a value is kept. A leading `export ` is allowed.
    """
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{origin} line {number}"
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        key, sep, rest = stripped.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            problems.append(
                Problem(where, "<line not shown>", "KEY=VALUE, a comment (#) or an empty line")
            )
            continue
        if not _known_name(key):
            if key not in spec.IGNORED_OLD_NAMES:
                close = difflib.get_close_matches(key, spec.BY_NAME, n=1)
                hint = f"did you mean {close[0]}?" if close else "see docs/configuration.md"
                problems.append(
                    Problem(
                        key,
                        "",
                        "a setting listed in docs/configuration.md",
                        f"unknown setting in {where}; {hint}",
                    )
                )
            continue
        try:
            values[key] = _unquote(rest.strip())
        except ValueError as e:
            problems.append(
                Problem(key, REDACTED, "a value, optionally in matching quotes", f"{where}: {e}")
            )
    return values, problems


def _unquote(text: str) -> str:
    if not text or text[0] not in "\"'":
        return text
    quote = text[0]
    out: list[str] = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == quote:
            if text[i + 1 :].strip():
                raise ValueError("text after the closing quote")
            return "".join(out)
        if quote == '"' and ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\$`':
            out.append(text[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    raise ValueError("missing closing quote")


def read_value_file(path_text: str) -> str:
    """Read a NAME_FILE or credential: a regular file, UTF-8, trailing newlines stripped.

    Raises ValueError with a message naming what is wrong (never the content).
    """
    if not path_text.startswith("/"):
        raise ValueError("the path must be absolute")
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd = os.open(path_text, flags)
    except FileNotFoundError:
        raise ValueError("file not found") from None
    except PermissionError:
        raise ValueError("permission denied") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot open: {type(e).__name__}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        data = os.read(fd, MAX_VALUE_FILE_BYTES + 1)
        chunks = [data]
        while data and sum(map(len, chunks)) <= MAX_VALUE_FILE_BYTES:
            data = os.read(fd, MAX_VALUE_FILE_BYTES + 1)
            chunks.append(data)
    except OSError as e:
        raise ValueError(f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    content = b"".join(chunks)
    if len(content) > MAX_VALUE_FILE_BYTES:
        raise ValueError(f"larger than {MAX_VALUE_FILE_BYTES} bytes")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not valid UTF-8") from None
    return text.rstrip("\r\n")


def _shown_path(name: str, path_text: str) -> str:
    """A _FILE path is shown unless it might be a secret typed into the wrong variable."""
    if name[:-5] not in spec.SECRET_NAMES:
        return path_text
    try:
        plausible = path_text.startswith("/") and Path(path_text).parent.is_dir()
    except (OSError, ValueError):
        plausible = False
    return path_text if plausible else REDACTED


def gather(
    *,
    conffile: Path,
    environ: Mapping[str, str],
    credentials_dir: Path | None,
    unit_credentials: Mapping[str, tuple[str, str]] | None = None,
) -> RawValues:
    """Read every source and merge them by precedence (imperative shell).

    `unit_credentials` (setting name -> (value, origin)) stands in for $CREDENTIALS_DIRECTORY
    when checking from a shell what the unit will load (LoadCredential=).
    """
    raw = RawValues()
    layered: dict[str, str] = {}
    origins: dict[str, str] = {}
    try:
        text = conffile.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = "not valid UTF-8" if isinstance(e, UnicodeDecodeError) else type(e).__name__
        raw.problems.append(Problem(str(conffile), "<file>", "a readable UTF-8 file", reason))
        text = ""
    from_file, problems = parse_conffile(text, str(conffile))
    raw.problems.extend(problems)
    _warn_if_exposed(conffile, from_file)
    layered.update(from_file)
    origins.update(dict.fromkeys(from_file, str(conffile)))
    for name, value in environ.items():
        if _known_name(name):
            layered[name] = value
            origins[name] = "environment"

    for setting in spec.SETTINGS:
        name, file_name = setting.name, setting.file_name
        value = layered.get(name, "")
        path_text = layered.get(file_name, "")
        if name in layered:
            raw.values[name] = value
            raw.origins[name] = origins[name]
        if value and path_text:
            raw.problems.append(
                Problem(
                    file_name,
                    _shown_path(file_name, path_text),
                    f"only one of {name} and {file_name}",
                    f"both are set ({origins[name]}, {origins[file_name]})",
                )
            )
        elif path_text:
            try:
                raw.values[name] = read_value_file(path_text)
                raw.origins[name] = f"{file_name}"
            except ValueError as e:
                raw.problems.append(
                    Problem(
                        file_name,
                        _shown_path(file_name, path_text),
                        "the absolute path of a readable regular UTF-8 file",
                        str(e),
                    )
                )
    if credentials_dir is not None:
        _read_credentials(credentials_dir, raw)
    elif unit_credentials:
        for name, (value, origin) in unit_credentials.items():
            raw.values[name] = value
            raw.origins[name] = origin
    for name, hint in unknown_environment_names(environ):
        log.warning("%s is set in the environment but is not a setting; %s", name, hint)
    return raw


# Environment names of ssh itself, of shells and of the old image that look like settings.
_NOT_SETTINGS = frozenset(
    {
        "SSH_AUTH_SOCK",
        "SSH_AGENT_PID",
        "SSH_CLIENT",
        "SSH_CONNECTION",
        "SSH_TTY",
        "SSH_ASKPASS",
        "SSH_ORIGINAL_COMMAND",
        "NOTIFY_SOCKET",  # systemd's sd_notify socket
        "JAVA_HOME",
        "JAVA_TOOL_OPTIONS",
        "JAVA_OPTS",
    }
)
_SETTING_PREFIXES = (
    "TWS_",
    "IBC_",
    "IB_",
    "SSH_",
    "VNC_",
    "TWOFA_",
    "NOTIFY_",
    "PROBE_",
    "RECOVERY_",
    "RELAY_",
    "API_PORT",
    "COMMAND_PORT",
    "AUTO_",
    "JAVA_",
    "METRICS_",
    "TRADING_",
)


def unknown_environment_names(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """Environment names that look like settings but are none, with a "did you mean" hint
    (a typo in the container's .env is otherwise silently ignored)."""
    out: list[tuple[str, str]] = []
    for name in sorted(environ):
        if _known_name(name) or name in spec.IGNORED_OLD_NAMES or name in _NOT_SETTINGS:
            continue
        prefixed = name.startswith(_SETTING_PREFIXES)
        close = difflib.get_close_matches(name, spec.BY_NAME, n=1, cutoff=0.6 if prefixed else 0.8)
        if not close and not prefixed:
            continue
        hint = f"did you mean {close[0]}?" if close else "see ibgwd.conf(5) for the settings"
        out.append((name, hint))
    return out


def _warn_if_exposed(conffile: Path, from_file: Mapping[str, str]) -> None:
    """A conffile holding a secret should be private; say so (it is not an error)."""
    if not any(from_file.get(name) for name in spec.SECRET_NAMES):
        return
    try:
        mode = conffile.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "conffile holds a secret but is readable by others path=%s mode=%o hint=%s",
            conffile,
            mode & 0o777,
            "chmod 600, or use NAME_FILE or systemd credentials",
        )


def _read_credentials(credentials_dir: Path, raw: RawValues) -> None:
    try:
        present = {p.name for p in credentials_dir.iterdir()}
    except (OSError, ValueError):
        return  # no credentials passed: nothing to override
    for setting in spec.SETTINGS:
        cred = setting.credential_name
        if cred not in present:
            continue
        try:
            raw.values[setting.name] = read_value_file(str(credentials_dir.absolute() / cred))
            raw.origins[setting.name] = f"credential {cred}"
        except ValueError as e:
            raw.problems.append(
                Problem(f"credential {cred}", "<file>", "a readable regular UTF-8 file", str(e))
            )
