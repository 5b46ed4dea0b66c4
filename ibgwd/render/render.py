"""Settings → the files IBC and the Gateway read (config.ini per mode, jts.ini), pure.

Every value placed into config.ini goes through the Java-properties escaper (the template
environment's `finalize`), so no template line can forget it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from ibgwd.config.model import GatewaySettings, Mode, Settings
from ibgwd.render.properties import escape_value
from ibgwd.schedule import settings_restart_time

REDACTED = "<redacted>"
SECRET_MODE = 0o600


@dataclass(frozen=True)
class RenderedFile:
    """One file to write. `text` may hold secrets (then `secret` is true): never log it."""

    path: Path
    text: str = field(repr=False)
    mode: int
    secret: bool
    only_if_missing: bool
    redacted: str = field(default="", repr=False, compare=False)  # text with secrets masked


def config_ini_path(runtime_dir: Path, mode: Mode) -> Path:
    """Where IBC's config.ini of one gateway is rendered: `<runtime_dir>/ibc/config-<mode>.ini`."""
    return runtime_dir / "ibc" / f"config-{mode.value}.ini"


def jts_ini_path(gateway: GatewaySettings) -> Path:
    return Path(gateway.settings_path) / "jts.ini"


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _finalize_properties(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"config.ini values must be str, got {type(value).__name__}")
    return escape_value(value)


def _finalize_ini(value: object) -> str:
    text = str(value)
    if any(c in text for c in "\r\n\0"):
        raise ValueError("jts.ini values cannot contain line breaks")
    return text


def _environment(finalize: object) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("ibgwd.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=finalize,  # type: ignore[arg-type]
    )


def _config_ini_context(
    settings: Settings, gateway: GatewaySettings, *, reveal: bool
) -> dict[str, str]:
    password = gateway.credentials.password.reveal() if reveal else REDACTED
    master = settings.master_client_id
    return {
        "instance": settings.instance,
        "mode": gateway.mode.value,
        "user": gateway.credentials.user,
        "password": password,
        "twofa_device": settings.twofa_device,
        "relogin_after_twofa_timeout": _yes_no(settings.relogin_after_twofa_timeout),
        "twofa_exit_interval": str(settings.twofa_exit_interval),
        "existing_session_action": settings.existing_session_action,
        "api_port": str(gateway.api_port),
        "master_client_id": "" if master is None else str(master),
        "read_only_api": _yes_no(settings.read_only_api),
        "bypass_warning": _yes_no(settings.bypass_warning),
        "auto_logoff_time": settings.auto_logoff_time,
        # Always rendered (the Gateway's own default unless AUTO_LOGOFF_TIME is set): ibgwd
        # then knows the schedule, and IBC re-applies it at each login, so a soft RESTART
        # (which moves the Gateway's restart time to its minute) is undone at the next login.
        "auto_restart_time": settings_restart_time(settings),
        "cold_restart_time": settings.cold_restart_time,
        "accept_incoming": settings.accept_incoming,
        "allow_blind_trading": _yes_no(settings.allow_blind_trading),
        "save_tws_settings": settings.save_tws_settings,
        "command_port": str(gateway.command_port),
    }


def render_files(settings: Settings, *, runtime_dir: Path) -> tuple[RenderedFile, ...]:
    """The files to write for `settings`: config.ini per gateway (0600, secret) and jts.ini
    per gateway (only if missing, so TIME_ZONE applies on first run only, as the old image
    does). With CUSTOM_CONFIG=yes nothing is rendered: the user provides both files."""
    if settings.custom_config:
        return ()
    properties = _environment(_finalize_properties)
    ini = _environment(_finalize_ini)
    config_template = properties.get_template("config.ini.j2")
    jts_template = ini.get_template("jts.ini.j2")
    files: list[RenderedFile] = []
    for gateway in settings.gateways:
        files.append(
            RenderedFile(
                path=config_ini_path(runtime_dir, gateway.mode),
                text=config_template.render(_config_ini_context(settings, gateway, reveal=True)),
                mode=SECRET_MODE,
                secret=True,
                only_if_missing=False,
                redacted=config_template.render(
                    _config_ini_context(settings, gateway, reveal=False)
                ),
            )
        )
    for gateway in settings.gateways:
        text = jts_template.render(time_zone=settings.time_zone)
        files.append(
            RenderedFile(
                path=jts_ini_path(gateway),
                text=text,
                mode=SECRET_MODE,
                secret=False,
                only_if_missing=True,
                redacted=text,
            )
        )
    return tuple(files)
