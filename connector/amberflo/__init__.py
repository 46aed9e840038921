"""Typed client for the Amberflo API (customers, plans, meters, usage, simple ingest)."""

from connector.amberflo.client import AmberfloClient
from connector.amberflo.models import (
    ClientMeter,
    Customer,
    Meter,
    PlanAssignment,
    UsageQuery,
    UsageReport,
    usage_query,
)
from connector.amberflo.status import AmberfloApiError

__all__ = [
    "AmberfloApiError",
    "AmberfloClient",
    "ClientMeter",
    "Customer",
    "Meter",
    "PlanAssignment",
    "UsageQuery",
    "UsageReport",
    "usage_query",
]
