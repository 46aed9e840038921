"""Delivery of meter events as objects in the S3 bucket Amberflo ingests from.

One batch → one object: gzip'd NDJSON (one meter event per line, as ``/ingest`` takes them),
stored under a key that is a function of what is in it:

    <prefix>/<MM-DD-YYYY>/<topic>.<partition>.<first offset>-<last offset>.ndjson.gz

The date is that of the first record's Kafka timestamp (the first event's time when the
record has none), never the wall clock, and the body is deterministic (``gzip`` with
``mtime=0``).  The worker batches for this sink by partition and aligned offset runs
(``Batching.window``), so a batch re-sent after a crash holds the same records and
overwrites the same object with the same bytes; Amberflo's whole-record dedupe makes any
re-ingest harmless anyway.

``deliver`` returns once the PUT succeeded: every item is then *delivered* (the object is
durable in S3; Amberflo ingests it afterwards and reports a rejection asynchronously under
``failed-requests/``: ``sinks.s3_failures``).  Failures, by what S3 answered:

=============================  =================================================================
5xx, ``SlowDown``, timeouts,   botocore's ``standard`` retries (2 tries), then the sink's own
network errors, ExpiredToken   backoff (``RetryPolicy``): consumption pauses, nothing is committed
                               past the object, for ``retry_timeout_s`` (default: forever)
403 (``AccessDenied`` …),      ``FatalError``: one line naming the bucket and the setting
404 ``NoSuchBucket``,
a wrong region, other 4xx
no credentials in the chain    ``FatalError`` naming the AWS credential sources
=============================  =================================================================
"""

from __future__ import annotations

import gzip
import logging
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from connector import metrics
from connector.aws import DATE_FORMAT, s3_client
from connector.errors import Abandoned, ConfigError, FatalError, RetryableError, ThrottledError
from connector.retry import RetryPolicy
from connector.settings import Settings
from connector.sinks.base import Batching, Item, Outcome

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("connector.sink")

SUFFIX = ".ndjson.gz"
BOTOCORE_ATTEMPTS = 2
"""Tries of one PUT inside botocore (its ``standard`` mode: a quick retry of a blip, ≤ 1 s);
past them the sink's own backoff takes over, which pauses consumption and says so."""
_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ExpiredToken",
        "Throttling",
        "ThrottlingException",
        "OperationAborted",
    }
)
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "AccountProblem",
        "403",
    }
)


class ObjectRange(NamedTuple):
    """What an object key says about its records."""

    topic: str
    partition: int
    first: int
    last: int


def object_key(prefix: str, items: Sequence[Item]) -> str:
    """The key of the object holding ``items`` (one partition's, in offset order)."""
    first, last = items[0].record, items[-1].record
    millis = first.timestamp_ms if first.timestamp_ms > 0 else items[0].event.time_ms
    day = datetime.fromtimestamp(millis / 1000, UTC).strftime(DATE_FORMAT)
    name = f"{first.topic}.{first.partition}.{first.offset}-{last.offset}{SUFFIX}"
    return f"{prefix}/{day}/{name}" if prefix else f"{day}/{name}"


def parse_object_key(prefix: str, key: str) -> ObjectRange | None:
    """The topic, partition and offsets of an object this sink wrote under ``prefix``
    (None for any other key)."""
    head = f"{re.escape(prefix)}/" if prefix else ""
    m = re.fullmatch(head + r"\d\d-\d\d-\d{4}/(.+)\.(\d+)\.(\d+)-(\d+)" + re.escape(SUFFIX), key)
    if m is None:
        return None
    return ObjectRange(m[1], int(m[2]), int(m[3]), int(m[4]))


def encode(items: Sequence[Item], level: int) -> bytes:
    """gzip'd NDJSON, byte-for-byte the same for the same events (no timestamp in the
    gzip header)."""
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    body = b"".join([dumps(it.event.payload(), option=newline) for it in items])
    return gzip.compress(body, compresslevel=level, mtime=0)


def classify(error: dict[str, Any], status: int, bucket: str, key: str | None = None) -> Exception:
    """The exception a failed S3 call means (pure, so it is unit-tested)."""
    code = str(error.get("Code") or status)
    message = str(error.get("Message") or "").strip()
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    detail = f"{code}" + (f": {message}" if message and message != code else "")
    if code == "SlowDown" or status == 503:
        return ThrottledError(f"S3 is throttling ({detail}) on {where}", http_status=status)
    if code in _RETRYABLE_CODES or status >= 500:
        return RetryableError(f"S3 answered {status} ({detail}) on {where}", http_status=status)
    if code in _DENIED_CODES or status == 403:
        return FatalError(
            f"S3 denied access to {where} ({detail}); check the AWS credentials (environment, "
            "profile or the IRSA role) and that they may write to CONNECTOR_S3__BUCKET"
        )
    if code in ("NoSuchBucket", "404") or status == 404:
        return FatalError(f"bucket {bucket!r} does not exist (CONNECTOR_S3__BUCKET)")
    if status in (301, 307) or code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
        return FatalError(
            f"bucket {bucket!r} is in another region ({detail}); set CONNECTOR_S3__REGION"
        )
    return FatalError(f"S3 refused {where} ({status} {detail})")


class S3Sink:
    """Thread-safe: ``deliver`` runs in several threads (``sink.max_in_flight``)."""

    def __init__(self, settings: Settings, abort: threading.Event | None = None) -> None:
        cfg = settings.s3
        if not cfg.bucket:
            raise ConfigError("CONNECTOR_S3__BUCKET: is required when CONNECTOR_SINK__MODE=s3")
        self.bucket = cfg.bucket
        self.prefix = cfg.prefix
        self._acl = cfg.acl or None
        self._level = settings.sink.gzip_level
        self._s3: S3Client = s3_client(
            region=cfg.region,
            endpoint_url=cfg.endpoint_url,
            timeout_s=settings.sink.request_timeout_s,
            max_pool=settings.sink.max_in_flight + 2,
            attempts=BOTOCORE_ATTEMPTS,
        )
        self.abort = abort or threading.Event()
        self.retry = RetryPolicy.from_settings(
            settings.sink,
            abort=self.abort,
            log=log,
            name="S3 upload",
            stuck_hint="; partitions stay paused, nothing is committed past the failing objects",
        )
        self.batching = Batching(cfg.max_events, cfg.linger_ms / 1000, cfg.object_records)

    @property
    def target(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def backing_off(self) -> int:
        return self.retry.backing_off

    def check(self, timeout_s: float) -> None:
        """The bucket exists and these credentials may use it (``HeadBucket``); transient
        errors are retried for ``timeout_s``."""
        policy = RetryPolicy(
            0.5, 5.0, timeout_s, name="S3 check", abort=self.abort, log=log,
            timeout_key="CONNECTOR_KAFKA__STARTUP_TIMEOUT_S",
        )  # fmt: skip
        policy.call(self._call, "head_bucket", None, Bucket=self.bucket)

    def deliver(self, items: Sequence[Item]) -> Outcome:
        """PUT the batch as one object; every item is delivered once it is stored."""
        if self.abort.is_set():
            raise Abandoned("shutting down")
        key = object_key(self.prefix, items)
        body = encode(items, self._level)
        extra: dict[str, Any] = {"ACL": self._acl} if self._acl else {}
        started = time.perf_counter()
        self.retry.call(
            self._call,
            "put_object",
            key,
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="application/x-ndjson",
            **extra,
        )
        metrics.REQUEST_SECONDS.observe(time.perf_counter() - started)
        metrics.S3_OBJECTS.inc()
        metrics.S3_BYTES.inc(len(body))
        log.debug("stored %s (%d events, %d bytes)", key, len(items), len(body))
        return Outcome(delivered=list(items))

    def _call(self, operation: str, key: str | None, **params: Any) -> Any:
        """One S3 call (botocore retries inside), its failure turned into our error types."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        try:
            result = getattr(self._s3, operation)(**params)
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            metrics.S3_REQUESTS.labels(status=str(status)).inc()
            if status >= 500:
                metrics.HEALTH.unreachable()
            else:
                metrics.HEALTH.reached()
            raise classify(dict(exc.response.get("Error") or {}), status, self.bucket, key) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise FatalError(
                f"no AWS credentials for s3://{self.bucket}: {exc} (set AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a service-account role for IRSA)"
            ) from exc
        except BotoCoreError as exc:  # connection refused/reset, timeouts, …
            metrics.S3_REQUESTS.labels(status="error").inc()
            metrics.HEALTH.unreachable()
            raise RetryableError(f"cannot reach S3 for s3://{self.bucket}: {exc}") from exc
        metrics.S3_REQUESTS.labels(status="200").inc()
        metrics.HEALTH.reached()
        if operation == "put_object":
            metrics.LAST_INGEST.set_to_current_time()
        return result
