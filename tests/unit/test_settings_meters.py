"""The ``meters`` settings: the definitions list (YAML shorthand or mapping) and sync_on_start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector.errors import ConfigError
from connector.settings import load_settings

BASE = {"CONNECTOR_KAFKA__TOPICS": "usage", "CONNECTOR_AMBERFLO__API_KEY": "secret-key"}

LIST_FILE = """
meters:
  - meterApiName: api-calls
    label: API calls
    meterType: SUM_OF_ALL_USAGE
    dimensions: [region]
    description: Calls to the public API
  - meter_api_name: storage
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("CONNECTOR_"):
            monkeypatch.delenv(key)
    for k, v in BASE.items():
        monkeypatch.setenv(k, v)
    return monkeypatch


def test_no_meters_by_default(env: pytest.MonkeyPatch) -> None:
    meters = load_settings().meters
    assert meters.definitions == [] and meters.sync_on_start is False


def test_yaml_list_shorthand_and_env_sync_on_start_merge(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(LIST_FILE)
    env.setenv("CONNECTOR_METERS__SYNC_ON_START", "true")
    meters = load_settings(cfg).meters
    assert meters.sync_on_start is True
    first, second = meters.definitions
    assert first.meter_api_name == "api-calls" and first.label == "API calls"
    assert first.meter_type == "sum_of_all_usage"  # the live API's lower case
    assert first.dimensions == ["region"] and first.description == "Calls to the public API"
    assert second.meter_api_name == "storage"
    assert (second.label, second.meter_type, second.dimensions) == (None, None, None)


def test_yaml_mapping_form_and_env_json_definitions(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("meters:\n  sync_on_start: true\n  definitions:\n    - meterApiName: a\n")
    assert [m.meter_api_name for m in load_settings(cfg).meters.definitions] == ["a"]
    env.setenv("CONNECTOR_METERS__DEFINITIONS", '[{"meterApiName": "b", "label": "B"}]')
    meters = load_settings(cfg).meters
    assert [m.meter_api_name for m in meters.definitions] == ["b"] and meters.sync_on_start


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("meters:\n  - label: no name\n", "meters[0].meterApiName: is required"),
        (
            "meters:\n  - meterApiName: a\n  - meterApiName: a\n",
            "CONNECTOR_METERS__DEFINITIONS: meterApiName 'a' is defined twice",
        ),
        (
            "meters:\n  - meterApiName: a\n    meterType: 'sum of'\n",
            "meters[0].meterType: string should match",
        ),
        (
            "meters:\n  - meterApiName: a\n    dimension: [x]\n",
            "meters[0].dimension: is not a known setting",
        ),
        ("meters:\n  sync_on_start: perhaps\n", "CONNECTOR_METERS__SYNC_ON_START: "),
    ],
)
def test_bad_definitions_are_one_line_naming_the_key(
    env: pytest.MonkeyPatch, tmp_path: Path, text: str, expected: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    (line,) = str(info.value).splitlines()
    assert line.startswith(expected)
    assert info.value.exit_code == 2
