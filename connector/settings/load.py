"""Loading the settings: every problem one line naming the key, raised as ``ConfigError``
(exit 2); with ``for_run``, what ``run`` needs is checked too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import SettingsError

from connector.errors import ConfigError
from connector.settings.problems import env_json_problems, env_name, format_validation_error
from connector.settings.root import Settings

CONFIG_FILE_ENV = "CONNECTOR_CONFIG_FILE"


def load_settings(
    config_file: Path | str | None = None,
    *,
    for_run: bool = True,
    kafka_clients: bool | None = None,
    **overrides: Any,
) -> Settings:
    """Load and validate. Raises ``ConfigError`` whose message has one line per problem.

    ``for_run`` (``run``, ``config check``): the settings marked ``REQUIRED_BY_RUN`` must be
    given, and the librdkafka properties must build a consumer and a producer.  The dlq tools
    load with ``for_run=False`` (they need neither the API key nor the source topics), and so
    do the Amberflo commands, which require the API key themselves (``cli.options``).
    ``kafka_clients`` (default: ``for_run``) builds the consumer and the DLQ producer without
    connecting, so a property librdkafka refuses is one line here, not a traceback later; the
    dlq tools ask for it.
    """
    problems = env_json_problems(Settings)
    if problems:
        raise ConfigError("\n".join(problems))
    path = config_file or os.environ.get(CONFIG_FILE_ENV) or None
    Settings._yaml_file = Path(path) if path else None
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("\n".join(format_validation_error(Settings, exc))) from exc
    except SettingsError as exc:  # a parse failure env_json_problems did not foresee
        raise ConfigError(" ".join(str(exc).split())) from exc
    finally:
        Settings._yaml_file = None
    problems = [f"{name}: is required" for name in _missing_for_run(settings)] if for_run else []
    if not problems and (for_run if kafka_clients is None else kafka_clients):
        from connector.settings.librdkafka import config_problems  # imports confluent_kafka

        problems = config_problems(settings)
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


def _missing_for_run(settings: Settings) -> list[str]:
    missing = []
    for name, info, _ann, value in _walk_values(settings):
        extra = info.json_schema_extra
        if isinstance(extra, dict) and extra.get("required_by") == "run":
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if not value:
                missing.append(name)
    if settings.sink.mode == "s3" and not settings.s3.bucket:
        missing.append(f"{env_name(('s3', 'bucket'))} (with CONNECTOR_SINK__MODE=s3)")
    return missing


def _walk_values(obj: BaseModel, loc: tuple[str, ...] = ()) -> list[tuple[str, Any, Any, Any]]:
    rows: list[tuple[str, Any, Any, Any]] = []
    for name, info in type(obj).model_fields.items():
        value = getattr(obj, name)
        if isinstance(value, BaseModel):
            rows.extend(_walk_values(value, (*loc, name)))
        else:
            rows.append((env_name((*loc, name)), info, info.annotation, value))
    return rows
