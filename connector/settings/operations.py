"""Running and operating the connector: logging, the meter definitions ``meters sync``
manages, and ``reconcile``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from connector.settings.base import Section

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def upper_level(value: Any) -> Any:
    """A log level as given in any case, upper-cased for validation."""
    return value.upper() if isinstance(value, str) else value


class LogSettings(Section):
    level: LogLevel = Field("INFO", description="Level of every logger not named in levels.")
    format: Literal["text", "json"] = Field(
        "text", description="Log line format: text, or json (one object per line)."
    )
    levels: dict[str, LogLevel] = Field(
        default_factory=dict,
        description="Level per logger (and its children), overriding level, e.g. "
        '{"connector.sink": "DEBUG", "connector.source": "WARNING"}. The connector\'s loggers '
        "are connector (all of them), connector.worker, connector.source, connector.sink, "
        "connector.kafka.client (librdkafka's own lines; a repeated failure shows once a "
        "minute with a count), connector.dlq, connector.guard (retention guard), "
        "connector.supervisor, "
        "connector.customers (customer updates), connector.formats (decoders: Schema "
        "Registry, Segment), connector.meters (meters sync at start) and connector.retry "
        "(other Amberflo API calls).",
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return upper_level(value)

    @field_validator("levels", mode="before")
    @classmethod
    def _upper_levels(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: upper_level(v) for k, v in value.items()}
        return value


class ReconcileSettings(Section):
    slack_s: int = Field(
        3600,
        ge=0,
        le=30 * 86400,
        description="`reconcile` starts reading each partition at the first record whose Kafka "
        "timestamp is this many seconds before --from (event times and record times differ).",
    )
    retry_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="`reconcile` retries Amberflo's usage API (429, 5xx, unreachable) with the "
        "sink's backoff for this long, then gives up with exit code 3.",
    )


class MeterDefinition(BaseModel):
    """One meter definition for ``meters sync``, in Amberflo's field names (camelCase; the
    snake_case spellings work too).  A field left out is not managed: a new meter gets
    Amberflo's default for it and an existing meter keeps its value."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    meter_api_name: str = Field(min_length=1, description="The meter's API name (its key).")
    label: str | None = Field(None, min_length=1, description="Display name.")
    meter_type: str | None = Field(
        None,
        pattern=r"^[A-Za-z][A-Za-z_]*$",
        description="Aggregation type as Amberflo names it, e.g. sum_of_all_usage (lower-cased).",
    )
    dimensions: list[str] | None = Field(None, description="Dimension names.")
    description: str | None = None

    @field_validator("meter_type")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else value


class MetersSettings(Section):
    """``meters:`` in a config file is either this mapping or just the definitions list."""

    definitions: list[MeterDefinition] = Field(
        default_factory=list,
        description="Meter definitions that 'meters sync' creates or updates in Amberflo: a "
        "list of {meterApiName, label, meterType, dimensions, description}. In a config file "
        "'meters:' may hold this list directly.",
    )
    sync_on_start: bool = Field(
        False, description="run syncs the meter definitions before it consumes anything."
    )

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, value: Any) -> Any:
        return {"definitions": value} if isinstance(value, list) else value

    @field_validator("definitions")
    @classmethod
    def _unique_names(cls, value: list[MeterDefinition]) -> list[MeterDefinition]:
        names = [m.meter_api_name for m in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"meterApiName {', '.join(map(repr, twice))} is defined twice")
        return value
