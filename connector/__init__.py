"""Kafka → Amberflo usage-metering connector."""

__version__ = "0.1.0"
