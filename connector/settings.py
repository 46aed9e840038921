"""The configuration tree.

Sources, strongest first: environment variables (prefix ``CONNECTOR_``, nesting with ``__``,
e.g. ``CONNECTOR_SINK__BATCH_SIZE``), then the YAML file named by ``--config`` or
``CONNECTOR_CONFIG_FILE``, then the defaults below.  ``load_settings`` turns every validation
problem into one line naming the environment variable, and raises ``ConfigError`` (exit 2).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from connector.errors import ConfigError
from connector.formats.config import Mapping, files_relative_to
from connector.settings_errors import (
    ENV_PREFIX,
    env_json_problems,
    env_name,
    format_validation_error,
)

CONFIG_FILE_ENV = "CONNECTOR_CONFIG_FILE"
LibrdkafkaValue = str | int | float | bool
DEFAULT_UNIQUE_ID_NAMESPACE = "amberflo-connector"
REQUIRED_BY_RUN: JsonDict = {"required_by": "run"}
"""Marks a setting that ``run`` (and ``config check``) require and the dlq tools do not."""

_NO_AUTO_COMMIT = "offsets are committed only after their records are delivered"
PROTECTED_CONSUMER = {
    "enable.auto.commit": _NO_AUTO_COMMIT,
    "auto.commit.enable": _NO_AUTO_COMMIT,
    "enable.auto.offset.store": _NO_AUTO_COMMIT,
    "isolation.level": "usage from aborted transactions must never be billed",
    "group.id": "set CONNECTOR_KAFKA__GROUP_ID instead",
    "bootstrap.servers": "set CONNECTOR_KAFKA__BOOTSTRAP_SERVERS instead",
}
"""librdkafka consumer properties ``CONNECTOR_KAFKA__CONSUMER`` may not set, and why."""
_ACKED = "a dead letter counts as written only once every replica has it, exactly once"
PROTECTED_PRODUCER = {
    "acks": _ACKED,
    "request.required.acks": _ACKED,
    "enable.idempotence": _ACKED,
}
"""librdkafka producer properties ``CONNECTOR_KAFKA__PRODUCER`` may not set, and why."""


def _refuse_protected(value: dict[str, Any], protected: dict[str, str]) -> dict[str, Any]:
    for key in value:
        reason = protected.get(key.strip().lower())
        if reason is not None:
            raise ValueError(f"{key!r} cannot be overridden ({reason})")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = Field(
        "localhost:9092", description="Kafka bootstrap servers, host:port[,host:port…]."
    )
    group_id: str = Field(
        "amberflo-connector", min_length=1, description="Consumer group id of the connector."
    )
    topics: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Topics to read: comma-separated or a JSON list; an entry starting with "
        "'^' is a regular expression (Python re.search) over the cluster's topics, never "
        "matching dead-letter topics (*.dlq, CONNECTOR_DLQ__TOPIC) or internal ones (__*).",
        min_length=1,
        json_schema_extra=REQUIRED_BY_RUN,
    )
    pattern_refresh_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="How often the topic list is read again to apply the '^' patterns to new "
        "and deleted topics.",
    )
    consumer: dict[str, LibrdkafkaValue] = Field(
        default_factory=dict,
        description="Extra librdkafka properties for the consumer (security.protocol, sasl.*, "
        "ssl.*, session.timeout.ms, …); they override the connector's own defaults "
        "(fetch.wait.max.ms 100, fetch.queue.backoff.ms 20). Security properties are also "
        "given to the DLQ producer. enable.auto.commit, enable.auto.offset.store, "
        "isolation.level (read_committed), group.id and bootstrap.servers cannot be set here.",
    )
    producer: dict[str, LibrdkafkaValue] = Field(
        default_factory=dict,
        description="Extra librdkafka properties for the DLQ producer; acks (all) and "
        "enable.idempotence (true) cannot be set here.",
    )
    assignment_strategy: Literal["cooperative-sticky", "range", "roundrobin"] = Field(
        "cooperative-sticky", description="partition.assignment.strategy of the consumer group."
    )
    commit_interval_ms: int = Field(
        1000, ge=10, le=600_000, description="Commit done offsets at least this often."
    )
    startup_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Give up when the brokers stay unreachable this long."
    )
    poll_batch: int = Field(
        2000, ge=1, le=100_000, description="Records taken from librdkafka per consume() call."
    )
    fetch_queue_kbytes: int = Field(
        16384,
        ge=64,
        le=2_097_151,
        description="queued.max.messages.kbytes: bounds librdkafka's prefetch (memory).",
    )

    @field_validator("topics", mode="before")
    @classmethod
    def _split_topics(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"not a valid JSON list ({exc})") from None
            return [t.strip() for t in text.split(",") if t.strip()]
        return value

    @field_validator("topics")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for topic in value:
            if topic.startswith("^"):
                try:
                    re.compile(topic)
                except re.error as exc:
                    raise ValueError(
                        f"{topic!r} is not a valid regular expression ({exc})"
                    ) from None
        return value

    @field_validator("consumer")
    @classmethod
    def _consumer_keeps_the_contract(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _refuse_protected(value, PROTECTED_CONSUMER)

    @field_validator("producer")
    @classmethod
    def _producer_keeps_the_contract(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _refuse_protected(value, PROTECTED_PRODUCER)


class AmberfloSettings(_Section):
    api_key: SecretStr = Field(
        SecretStr(""),
        description="Amberflo API key (sent as X-API-KEY).",
        json_schema_extra=REQUIRED_BY_RUN,
    )
    base_url: str = Field(
        "https://app.amberflo.io", description="Base URL for every Amberflo API call."
    )
    ingest_url: str | None = Field(
        None,
        description="Base URL for /ingest (default: base_url). Use https://ingest.amberflo.io "
        "in production.",
    )

    @field_validator("base_url", "ingest_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @property
    def effective_ingest_url(self) -> str:
        return self.ingest_url or self.base_url


class SinkSettings(_Section):
    batch_size: int = Field(500, ge=1, le=1000, description="Events per /ingest request.")
    linger_ms: int = Field(
        200, ge=0, le=60_000, description="Longest wait for a batch to fill before sending."
    )
    max_in_flight: int = Field(4, ge=1, le=64, description="Concurrent /ingest requests.")
    request_timeout_s: float = Field(30.0, gt=0, le=600, description="Per-request timeout.")
    gzip: bool = Field(True, description="Send request bodies with Content-Encoding: gzip.")
    gzip_level: int = Field(1, ge=1, le=9, description="zlib compression level.")
    max_buffered_records: int = Field(
        50_000,
        ge=1,
        le=10_000_000,
        description="Records held in the process before consumption pauses (backpressure).",
    )
    max_buffered_events: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="Meter events held (being batched, queued or sent) before consumption "
        "pauses: bounds records that expand into many events (a values map).",
    )
    max_buffered_mb: int = Field(
        128,
        ge=1,
        le=65_536,
        description="Estimated memory of the held records and their events, in MiB, before "
        "consumption pauses (record bytes + about 1 KB per record + 400 B per event): bounds "
        "large records.",
    )
    retry_initial_s: float = Field(0.5, gt=0, le=60, description="First backoff delay.")
    retry_max_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest backoff delay, and the longest Retry-After honoured (a longer or "
        "unparseable one is capped or ignored).",
    )
    retry_timeout_s: float | None = Field(
        None,
        gt=0,
        description="Give up retrying a batch (or a partition waiting for the Schema "
        "Registry) after this long and stop the connector (default: retry forever; usage is "
        "never dropped).",
    )
    readiness_timeout_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="/readyz answers 503 once /ingest has been unreachable (connection errors, "
        "timeouts, 5xx) this long without a single answer in between; /healthz stays 200.",
    )
    mode: Literal["api", "s3"] = Field(
        "api",
        description="Where meter events go: api (Amberflo's /ingest) or s3 (gzip'd NDJSON "
        "objects in the S3 bucket Amberflo ingests from; CONNECTOR_S3__*, docs/s3.md). Both "
        "use the retry, in-flight, timeout and gzip_level settings of this section; batch "
        "size and linger of s3 objects are CONNECTOR_S3__OBJECT_RECORDS and __LINGER_MS.",
    )


class S3Settings(_Section):
    bucket: str | None = Field(
        None,
        description="The bucket Amberflo provisioned for S3 ingestion (required with "
        "CONNECTOR_SINK__MODE=s3).",
    )
    prefix: str = Field(
        "ingest/amberdata",
        description="Key prefix of the objects: <prefix>/<MM-DD-YYYY>/<topic>.<partition>."
        "<first offset>-<last offset>.ndjson.gz. Give each deployment reading the same "
        "topic its own prefix.",
    )
    region: str | None = Field(
        None, description="Region of the bucket (default: the AWS chain's, e.g. AWS_REGION)."
    )
    endpoint_url: str | None = Field(
        None, description="S3 endpoint for S3-compatible stores and tests (default: AWS's)."
    )
    object_records: int = Field(
        10_000,
        ge=1,
        le=1_000_000,
        description="Offsets per object: an object holds the events of one partition's records "
        "from one run of this many offsets (aligned to multiples of it), so a batch re-sent "
        "after a crash gets the same key and bytes. Keep max_buffered_records above this "
        "times the partitions per worker.",
    )
    max_events: int = Field(
        50_000,
        ge=1,
        le=1_000_000,
        description="Most events per object (a record with values becomes several events).",
    )
    linger_ms: int = Field(
        5000,
        ge=0,
        le=600_000,
        description="Longest wait for an object to fill before it is written.",
    )
    acl: str | None = Field(
        "bucket-owner-full-control",
        description="Canned ACL of each object (Amberflo's docs use bucket-owner-full-control); "
        "empty for none.",
    )
    failures_poll_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="How often to look for Amberflo's failure reports (failed-requests/) about "
        "the objects written, whose records are then dead-lettered; 0 disables it.",
    )

    @field_validator("prefix")
    @classmethod
    def _strip_slashes(cls, value: str) -> str:
        return value.strip("/")


class DlqSettings(_Section):
    topic: str | None = Field(
        None, description="Dead-letter topic (default: '<source topic>.dlq')."
    )
    header_style: Literal["amberflo", "connect"] = Field(
        "amberflo",
        description="'amberflo' writes amberflo.* headers; 'connect' writes Kafka Connect's "
        "__connect.errors.* headers.",
    )
    partitions: int = Field(1, ge=1, le=10_000, description="Partitions of a created DLQ topic.")
    replication_factor: int = Field(
        -1, ge=-1, le=32, description="Replication factor of a created DLQ topic (-1: broker's)."
    )


class TransformSettings(_Section):
    unique_id_namespace: str | None = Field(
        None,
        description="Namespace of derived uniqueIds (a UUID or any text). Default: "
        f"'{DEFAULT_UNIQUE_ID_NAMESPACE}', the same for every consumer group, so a renamed "
        "group re-reading a topic derives the same ids. Set a new one when a topic is "
        "recreated on a broker that reports no topic ids; 'amberflo-connector/<group id>' "
        "(with unique_id_topic_ids false) keeps the ids of version 0.1.",
    )
    unique_id_topic_ids: bool = Field(
        True,
        description="Make the broker's topic id (KIP-516), where it reports one, part of "
        "derived uniqueIds, so a deleted and recreated topic never repeats an old id.",
    )
    max_events_per_record: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Most meter events one record may make (a native record's values map); "
        "a record with more is dead-lettered (MappingError), not expanded.",
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


class MetersSettings(_Section):
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


class RetentionGuardSettings(_Section):
    warn_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Warn when a partition's oldest unfinished record is older than this share "
        "of its topic's retention.ms (read from the broker).",
    )
    critical_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Critical (error log, metric amberflo_connector_retention_guard 2) from "
        "this share on; must be ≥ warn_ratio.",
    )

    @field_validator("critical_ratio")
    @classmethod
    def _above_warn(cls, value: float, info: ValidationInfo) -> float:
        warn = info.data.get("warn_ratio")
        if warn is not None and value < warn:
            raise ValueError(f"must be ≥ warn_ratio ({warn})")
        return value


class SchemaRegistrySettings(_Section):
    """Where format ``avro`` fetches writer schemas by id (Confluent Schema Registry API)."""

    url: str | None = Field(
        None,
        description="Schema Registry URL for format avro, e.g. http://schema-registry:8081 "
        "(comma-separated: several, tried in turn).",
    )
    username: str | None = Field(
        None, description="Basic-auth user of the registry (Confluent Cloud: the API key)."
    )
    password: SecretStr | None = Field(
        None, description="Basic-auth password of the registry (Confluent Cloud: the API secret)."
    )
    ssl_ca_location: Path | None = Field(
        None, description="CA certificates (PEM file) that verify the registry's TLS certificate."
    )
    ssl_certificate_location: Path | None = Field(
        None, description="Client certificate (PEM file) for mutual TLS with the registry."
    )
    ssl_key_location: Path | None = Field(
        None, description="Client private key (PEM file) for mutual TLS with the registry."
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Timeout of one registry request. A registry that does not answer is down: "
        "the partition waiting for a schema pauses and retries with the sink's backoff "
        "(never dead-lettered).",
    )

    @field_validator("url")
    @classmethod
    def _http_urls(cls, value: str | None) -> str | None:
        if value is not None:
            for url in value.split(","):
                if not url.strip().startswith(("http://", "https://")):
                    raise ValueError("must start with http:// or https://")
        return value

    @field_validator("ssl_ca_location", "ssl_certificate_location", "ssl_key_location")
    @classmethod
    def _file_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {str(value)!r} does not exist")
        return value

    @model_validator(mode="after")
    def _pairs(self) -> SchemaRegistrySettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: give both or neither")
        if self.ssl_key_location is not None and self.ssl_certificate_location is None:
            raise ValueError("ssl_key_location needs ssl_certificate_location")
        return self


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _upper_level(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class LogSettings(_Section):
    level: LogLevel = Field("INFO", description="Level of every logger not named in levels.")
    format: Literal["text", "json"] = Field(
        "text", description="Log line format: text, or json (one object per line)."
    )
    levels: dict[str, LogLevel] = Field(
        default_factory=dict,
        description="Level per logger (and its children), overriding level, e.g. "
        '{"connector.sink": "DEBUG", "connector.source": "WARNING"}. The connector\'s loggers '
        "are connector (all of them), connector.worker, connector.source, connector.sink, "
        "connector.dlq, connector.guard (retention guard) and connector.supervisor.",
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return _upper_level(value)

    @field_validator("levels", mode="before")
    @classmethod
    def _upper_levels(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _upper_level(v) for k, v in value.items()}
        return value


class ReconcileSettings(_Section):
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
        return _upper_level(value)

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
        yaml_source = _yaml_source(settings_cls, cls._yaml_file)
        base = cls._yaml_file.parent if cls._yaml_file is not None else None
        return (init_settings, env_settings, _Shorthands(yaml_source, base))

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


def _yaml_source(settings_cls: type[BaseSettings], path: Path | None) -> YamlConfigSettingsSource:
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


class _Shorthands(PydanticBaseSettingsSource):
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
    except SettingsError as exc:  # a parse failure _env_json_problems did not foresee
        raise ConfigError(" ".join(str(exc).split())) from exc
    finally:
        Settings._yaml_file = None
    problems = [f"{name}: is required" for name in _missing_for_run(settings)] if for_run else []
    if not problems and (for_run if kafka_clients is None else kafka_clients):
        from connector.kafka import config_problems

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


def _walk(model: type[BaseModel], loc: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    rows: list[tuple[str, Any, Any]] = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(_walk(ann, (*loc, name)))
        else:
            rows.append((env_name((*loc, name)), info, ann))
    return rows


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md is this text; a test keeps it so)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `amberflo-connector config reference`; do not edit by hand.",
        "",
        "Every key is an environment variable (prefix `CONNECTOR_`, sections joined with `__`).",
        "The same keys can be given in a YAML file (`--config FILE` or `CONNECTOR_CONFIG_FILE`)",
        "as nested mappings in lower case, e.g. `sink: {batch_size: 500}`; environment",
        "variables override the file. Maps (`…__CONSUMER`, `…__PRODUCER`) and lists take JSON",
        "in the environment; `CONNECTOR_KAFKA__TOPICS` also takes a comma-separated list.",
        "",
        "| variable | default | description |",
        "| --- | --- | --- |",
    ]
    for name, info, _ann in _walk(Settings, ()):
        extra = info.json_schema_extra
        if info.is_required() or (isinstance(extra, dict) and extra.get("required_by")):
            default = "**required**"
        elif info.default_factory is not None:
            default = f"`{info.default_factory()}`"
        elif info.default is None:
            default = "—"
        else:
            default = (
                f"`{str(info.default).lower() if isinstance(info.default, bool) else info.default}`"
            )
        bounds = []
        for meta in info.metadata:
            for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
                if getattr(meta, attr, None) is not None:
                    bounds.append(f"{sym} {getattr(meta, attr)}")
        desc = (info.description or "").replace("|", "\\|")
        if bounds:
            desc += f" ({', '.join(bounds)})"
        lines.append(f"| `{name}` | {default} | {desc} |")
    return "\n".join(lines) + "\n"
