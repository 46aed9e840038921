"""Client for the Amberflo API (customers, plans, meters, usage, simple ingest)."""

from connector.amberflo.client import AmberfloApiError, AmberfloClient, usage_query

__all__ = ["AmberfloApiError", "AmberfloClient", "usage_query"]
