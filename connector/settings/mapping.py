"""How records become meter events: derived uniqueIds, and the Schema Registry of format
``avro`` (the per-topic ``mappings`` themselves are ``connector.formats.config.Mapping``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from connector.settings.base import Section

DEFAULT_UNIQUE_ID_NAMESPACE = "amberflo-connector"


class TransformSettings(Section):
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


class SchemaRegistrySettings(Section):
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
