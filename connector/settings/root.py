"""The root of the configuration tree: its sections, the few top-level keys, and the order of
the sources (init arguments, then the environment, then the YAML file)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from connector.formats.config import Mapping
from connector.settings.delivery import AmberfloSettings, S3Settings, SinkSettings
from connector.settings.kafka import DlqSettings, KafkaSettings, RetentionGuardSettings
from connector.settings.mapping import (
    DEFAULT_UNIQUE_ID_NAMESPACE,
    SchemaRegistrySettings,
    TransformSettings,
)
from connector.settings.operations import (
    LogLevel,
    LogSettings,
    MetersSettings,
    ReconcileSettings,
    upper_level,
)
from connector.settings.problems import ENV_PREFIX
from connector.settings.sources import Shorthands, yaml_file_source


class Settings(BaseSettings):
    """Root of the tree. See ``docs/configuration.md`` for every key."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )
    _yaml_file: ClassVar[Path | None] = None

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    amberflo: AmberfloSettings = Field(default_factory=AmberfloSettings)  # type: ignore[arg-type]
    sink: SinkSettings = Field(default_factory=SinkSettings)  # type: ignore[arg-type]
    dlq: DlqSettings = Field(default_factory=DlqSettings)  # type: ignore[arg-type]
    s3: S3Settings = Field(default_factory=S3Settings)  # type: ignore[arg-type]
    transform: TransformSettings = Field(default_factory=TransformSettings)  # type: ignore[arg-type]
    schema_registry: SchemaRegistrySettings = Field(
        default_factory=SchemaRegistrySettings  # type: ignore[arg-type]
    )
    mappings: list[Mapping] = Field(
        default_factory=list,
        description="Per-topic formats (native, json, cloudevents, …) and the rules that map "
        "records to meter events; YAML, or JSON in the environment. Syntax and examples: "
        "docs/mappings.md. A topic no entry names is read as native.",
    )
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)  # type: ignore[arg-type]
    meters: MetersSettings = Field(default_factory=MetersSettings)  # type: ignore[arg-type]
    shutdown_timeout_s: float = Field(
        25.0, gt=0, le=3600, description="Time allowed to finish in-flight work on SIGTERM."
    )
    retention_guard: RetentionGuardSettings = Field(default_factory=RetentionGuardSettings)  # type: ignore[arg-type]
    log: LogSettings = Field(default_factory=LogSettings)  # type: ignore[arg-type]
    log_level: LogLevel | None = Field(
        None,
        description="Deprecated: the old name of CONNECTOR_LOG__LEVEL (used when that is not set).",
    )
    log_format: Literal["text", "json"] | None = Field(
        None,
        description="Deprecated: the old name of CONNECTOR_LOG__FORMAT (used when that "
        "is not set).",
    )
    metrics_port: int = Field(
        9400,
        ge=0,
        le=65535,
        description="Port of the HTTP endpoint serving /metrics (Prometheus), /healthz and "
        "/readyz; 0 disables it.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return upper_level(value)

    @model_validator(mode="after")
    def _old_log_names(self) -> Settings:
        """CONNECTOR_LOG_LEVEL / CONNECTOR_LOG_FORMAT (0.1.0) still work; the new names win."""
        if self.log_level is not None and "level" not in self.log.model_fields_set:
            self.log.level = self.log_level
        if self.log_format is not None and "format" not in self.log.model_fields_set:
            self.log.format = self.log_format
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = yaml_file_source(settings_cls, cls._yaml_file)
        base = cls._yaml_file.parent if cls._yaml_file is not None else None
        return (init_settings, env_settings, Shorthands(yaml_source, base))

    @property
    def unique_id_namespace(self) -> uuid.UUID:
        """The UUID namespace of derived uniqueIds (a UUID as given, else a v5 of the text)."""
        text = self.transform.unique_id_namespace or DEFAULT_UNIQUE_ID_NAMESPACE
        try:
            return uuid.UUID(text)
        except ValueError:
            return uuid.uuid5(uuid.NAMESPACE_URL, text)

    def dlq_topic_for(self, source_topic: str) -> str:
        return self.dlq.topic or f"{source_topic}.dlq"

    def dlq_topics(self) -> list[str]:
        """The DLQ topic of each configured source topic, each once, in order (a ``^``
        pattern has none to derive until it matches a topic)."""
        if self.dlq.topic:
            return [self.dlq.topic]
        named = (t for t in self.kafka.topics if not t.startswith("^"))
        return list(dict.fromkeys(self.dlq_topic_for(t) for t in named))
