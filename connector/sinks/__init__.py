"""Destinations of meter events: ``api`` (Amberflo /ingest), ``s3`` (Amberflo's S3 bucket).

``make_sink`` picks the one ``CONNECTOR_SINK__MODE`` names; ``base`` holds the contract.
"""

from __future__ import annotations

from connector.settings import Settings
from connector.sinks.base import Sink


def make_sink(settings: Settings) -> Sink:
    if settings.sink.mode == "s3":
        from connector.sinks.s3 import S3Sink

        return S3Sink(settings)
    from connector.sinks.api import Sink as ApiSink

    return ApiSink(settings)
