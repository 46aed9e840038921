"""Typed client for the Amberflo API (customers, plans, meters, usage, simple ingest)."""

from connector.amberflo.client import AmberfloApiError, AmberfloClient, usage_query
from connector.amberflo.models import (
    ClientMeter,
    Customer,
    Meter,
    PlanAssignment,
    UsageQuery,
    UsageReport,
)

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
