"""Load one instance's settings from every source and validate them (the impure entry point)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from ibgwd import names
from ibgwd.config import sources, spec, validate
from ibgwd.config.model import Settings
from ibgwd.errors import ConfigError, Problem

log = logging.getLogger(__name__)


def conffile_path(instance: str, config_dir: Path) -> Path:
    """`<config_dir>/ibgwd.conf` for the default instance, `<config_dir>/<instance>.conf` else."""
    return config_dir / Path(names.InstanceNames(instance).config_file).name


def installed_gateway_versions(tws_path: str) -> tuple[str, ...] | None:
    """Directory names under TWS_PATH/ibgateway, or None if that directory does not exist."""
    try:
        entries = list(Path(tws_path, "ibgateway").iterdir())
    except (OSError, ValueError):
        return None
    return tuple(sorted(p.name for p in entries if p.is_dir() and not p.name.startswith(".")))


def load_settings(
    instance: str,
    *,
    config_dir: Path,
    environ: Mapping[str, str],
    credentials_dir: Path | None,
    unit_credentials: Mapping[str, tuple[str, str]] | None = None,
) -> Settings:
    """Read conffile → environment → NAME_FILE → credentials, validate, and return Settings.

    Raises ConfigError listing every problem found (never a secret value).
    """
    if not names.is_valid_instance(instance):
        raise ConfigError([Problem("instance", instance, names.INSTANCE_ACCEPTED)])
    conffile = conffile_path(instance, config_dir)
    raw = sources.gather(
        conffile=conffile,
        environ=environ,
        credentials_dir=credentials_dir,
        unit_credentials=unit_credentials,
    )
    installed: tuple[str, ...] | None = ()
    if not raw.values.get(spec.IB_GATEWAY_VERSION.name, "").strip():
        tws_path = raw.values.get(spec.TWS_PATH.name, "").strip() or spec.TWS_PATH.default
        installed = installed_gateway_versions(tws_path)
    settings, problems = validate.build(instance, raw.values, installed_versions=installed)
    all_problems = [*raw.problems, *problems]
    if not all_problems:
        # Imported here: isolation.ports uses this module's neighbours (sources, validate).
        from ibgwd.isolation.ports import collisions

        all_problems = collisions(instance, conffile, settings, config_dir)
    if all_problems:
        raise ConfigError(all_problems)
    log.debug(
        "settings loaded instance=%s conffile=%s trading_mode=%s sources=%s",
        instance,
        conffile,
        settings.trading_mode.value,
        ",".join(sorted(set(raw.origins.values()))) or "defaults",
    )
    return settings
