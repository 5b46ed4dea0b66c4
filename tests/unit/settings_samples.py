"""Sample settings sources for the config, render and CLI tests."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ibgwd.config.load import load_settings
from ibgwd.config.model import Settings

BASE_ENV: dict[str, str] = {
    "TWS_USERID": "liveuser",
    "TWS_PASSWORD": "live-pass",
    "IB_GATEWAY_VERSION": "10.37.1o",
    "TWS_SETTINGS_PATH": "/var/lib/ibgwd/default/settings",
}
DUAL_ENV: dict[str, str] = {
    **BASE_ENV,
    "TRADING_MODE": "both",
    "TWS_USERID_PAPER": "paperuser",
    "TWS_PASSWORD_PAPER": "paper-pass",
}


def load(
    environ: Mapping[str, str],
    tmp_path: Path,
    *,
    conf: str = "",
    instance: str = "default",
    credentials: Mapping[str, str] | None = None,
) -> Settings:
    """Load settings with an optional conffile and credentials directory under tmp_path."""
    config_dir = tmp_path / "etc"
    config_dir.mkdir(exist_ok=True)
    if conf:
        name = "ibgwd.conf" if instance == "default" else f"{instance}.conf"
        (config_dir / name).write_text(conf, encoding="utf-8")
    credentials_dir = None
    if credentials is not None:
        credentials_dir = tmp_path / "credentials"
        credentials_dir.mkdir(exist_ok=True)
        for name, value in credentials.items():
            (credentials_dir / name).write_text(value, encoding="utf-8")
    return load_settings(
        instance, config_dir=config_dir, environ=environ, credentials_dir=credentials_dir
    )
