"""Kafka → Amberflo usage-metering connector."""

__version__ = "0.2.0"
