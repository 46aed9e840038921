"""Where meter events go: the Amberflo API, the sink that sends them, and S3 mode."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from connector.settings.base import REQUIRED_BY_RUN, Section


class AmberfloSettings(Section):
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


class SinkSettings(Section):
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


class S3Settings(Section):
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
