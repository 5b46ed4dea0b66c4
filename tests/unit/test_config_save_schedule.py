"""SAVE_TWS_SETTINGS: IBC's SaveTwsSettingsAt syntax is checked, not passed through blindly."""

from __future__ import annotations

from pathlib import Path

import pytest
from settings_samples import BASE_ENV, load

from ibgwd.config.kinds import SaveSchedule
from ibgwd.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Every 30 mins", "Every 30 mins"),
        ("every  2 HOURS 9:00 17:00", "Every 2 hours 09:00 17:00"),
        ("08:00 12:30", "08:00 12:30"),
        ("Every 5", "Every 5"),
        ("", ""),
    ],
)
def test_accepted_schedules_are_normalised(raw: str, normalised: str) -> None:
    assert SaveSchedule().parse(raw) == normalised


@pytest.mark.parametrize("raw", ["Every mins", "25:00", "Every 3 days", "Every 0 mins", "noon"])
def test_bad_schedules_are_rejected(raw: str) -> None:
    with pytest.raises(ValueError):
        SaveSchedule().parse(raw)


def test_bad_save_tws_settings_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load({**BASE_ENV, "SAVE_TWS_SETTINGS": "Every 3 days"}, tmp_path)
    assert "SAVE_TWS_SETTINGS" in str(e.value) and "Every N [mins|hours]" in str(e.value)
