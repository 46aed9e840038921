"""Helpers for the S3 tests: a client of the session's moto server, and reading reports."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connector.aws import REPORTS_PREFIX, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def client(endpoint_url: str) -> S3Client:
    return s3_client(endpoint_url=endpoint_url, region="us-east-1", fallback_credentials=True)


def keys(s3: S3Client, bucket: str, prefix: str = "") -> list[str]:
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return out


def reports(s3: S3Client, bucket: str, about: str) -> dict[str, str]:
    """Failure reports (key → text) whose key contains ``about``."""
    return {
        k: s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode()
        for k in keys(s3, bucket, REPORTS_PREFIX)
        if about in k
    }
