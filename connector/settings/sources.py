"""The YAML config file as a settings source: read failures as one line naming the file, and
the file's shorthands expanded before the sources are merged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, YamlConfigSettingsSource

from connector.errors import ConfigError
from connector.formats.config import files_relative_to


def yaml_file_source(
    settings_cls: type[BaseSettings], path: Path | None
) -> YamlConfigSettingsSource:
    """pydantic-settings' YAML source, its failures turned into one line naming the file."""
    if path is not None:
        try:
            path.open(encoding="utf-8").close()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from exc
    try:
        return YamlConfigSettingsSource(settings_cls, yaml_file=path)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from exc
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: the config file must hold a mapping at the top level") from exc


class Shorthands(PydanticBaseSettingsSource):
    """A config file's shorthands expanded before the sources are merged: ``meters: [...]``
    becomes ``meters: {definitions: [...]}``, so ``CONNECTOR_METERS__SYNC_ON_START`` merges
    into it instead of replacing the list; the files its ``mappings`` name are relative to
    the file's directory (``base``)."""

    def __init__(self, inner: PydanticBaseSettingsSource, base: Path | None = None) -> None:
        super().__init__(inner.settings_cls)
        self._inner = inner
        self._base = base

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = self._inner()
        if isinstance(data.get("meters"), list):
            data = {**data, "meters": {"definitions": data["meters"]}}
        if self._base is not None and "mappings" in data:
            data = {**data, "mappings": files_relative_to(data["mappings"], self._base)}
        return data
