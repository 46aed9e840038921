"""S3 plumbing shared by the S3 sink, its failure-report watcher, ``s3 failures`` and the
emulator's S3 intake: the client, and the layout of Amberflo's failure reports.

boto3 is an optional dependency (``pip install 'amberflo-kafka-connector[s3]'``); without it
every S3 feature stops with one line naming the extra.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from connector.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPORTS_PREFIX = "failed-requests/"
"""Where Amberflo writes ``failed-requests/<date>/<original key>.reason.txt``."""
REPORT_SUFFIX = ".reason.txt"
DATE_FORMAT = "%m-%d-%Y"
"""The date in Amberflo's suggested key layout (``ingest/<name>/MM-DD-YYYY/<id>``)."""


def s3_client(
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    timeout_s: float = 30.0,
    max_pool: int = 10,
    attempts: int = 3,
    fallback_credentials: bool = False,
) -> S3Client:
    """A boto3 S3 client: credentials from the standard AWS chain (environment, profile,
    web identity / IRSA, instance role), botocore's ``standard`` retry mode with
    ``attempts`` tries per call (5xx, throttling such as ``SlowDown`` and network errors).

    ``fallback_credentials`` (the emulator only): when the chain finds none, sign with fixed
    dummy keys, which S3-compatible test servers accept.
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:
        raise ConfigError(
            "S3 needs boto3: pip install 'amberflo-kafka-connector[s3]' (CONNECTOR_SINK__MODE=s3)"
        ) from exc
    session = boto3.session.Session()
    extra: dict[str, Any] = {}
    if fallback_credentials and session.get_credentials() is None:
        extra = {"aws_access_key_id": "emulator", "aws_secret_access_key": "emulator"}
    config = Config(
        retries={"mode": "standard", "max_attempts": attempts},
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        max_pool_connections=max_pool,
    )
    return session.client(
        "s3", region_name=region, endpoint_url=endpoint_url, config=config, **extra
    )


def report_key(object_key: str, when: datetime | None = None) -> str:
    """The failure report Amberflo writes for ``object_key`` (dated ``when``, default now)."""
    day = (when or datetime.now(UTC)).strftime(DATE_FORMAT)
    return f"{REPORTS_PREFIX}{day}/{object_key}{REPORT_SUFFIX}"


def reported_object(report: str) -> str | None:
    """The object key a failure report is about (None: not a report key).

    ``failed-requests/<date>/<key>.reason.txt``: the date is one path segment.
    """
    if not report.startswith(REPORTS_PREFIX) or not report.endswith(REPORT_SUFFIX):
        return None
    rest = report[len(REPORTS_PREFIX) : -len(REPORT_SUFFIX)]
    _date, sep, key = rest.partition("/")
    return key if sep and key else None
