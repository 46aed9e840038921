"""The typed, synchronous client of the Amberflo API (and the local emulator's extras).

Customers, product plans, meters, usage reports and a simple ``ingest``, for the commands
(``customers``, ``meters``, ``usage``), the demo and tests; the high-throughput delivery path
is ``connector.sinks.api``.  Bodies are the typed models of ``connector.amberflo.models``;
requests, answers and errors are ``connector.amberflo.transport``'s (which errors each call
raises is said there).

Retries: with a ``RetryPolicy`` (``from_settings`` gives the sink's: ``CONNECTOR_SINK__RETRY_*``)
every method retries Retryable/Throttled errors as one whole operation, and only operations
that are safe to repeat are retried: reads, ``PUT`` upserts, ``ensure_plan`` (which re-reads
the current plan before assigning), meter creation (a repeat answers 409, never a second
meter) and ingest (deterministic uniqueIds).  ``assign_plan`` is never retried: a repeated
POST would record a second assignment.  Without a policy nothing is retried.
"""

from __future__ import annotations

import gzip as gzip_module
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from connector.amberflo.models import (
    JSON,
    Customer,
    Interval,
    Meter,
    PlanAssignment,
    UsageQuery,
    UsageReport,
)
from connector.amberflo.status import AmberfloApiError
from connector.amberflo.transport import Transport
from connector.errors import FatalError

PRICING_PATH = "/payments/pricing/amberflo/customer-pricing"


class AmberfloClient(Transport):
    """The API's operations, each one call (retried as a whole where safe: see above)."""

    # -- customers -----------------------------------------------------------------------

    def list_customers(self) -> list[Customer]:
        return self._retried(self._many, Customer, "GET", "/customers")

    def get_customer(self, customer_id: str) -> Customer | None:
        """The customer, or None when Amberflo answers ``{}`` (absent)."""
        return self._retried(
            self._one, Customer, "GET", "/customers", params={"customerId": customer_id}
        )

    def upsert_customer(self, customer: Customer) -> Customer:
        """Create or replace the customer (``PUT /customers``, Amberflo's create-or-update, as
        the Segment destination uses it; a server that answers 404/405 to a PUT of an absent
        customer gets a ``POST``).  Replace semantics: fields and traits not given are dropped.
        """
        return self._retried(self._upsert_once, customer)

    def _upsert_once(self, customer: Customer) -> Customer:
        body = customer.wire()
        try:
            doc = self._one(Customer, "PUT", "/customers", json=body)
        except AmberfloApiError as exc:
            if exc.status not in (404, 405):
                raise
            doc = self._one(Customer, "POST", "/customers", json=body)
        return doc or customer

    def delete_customer(self, customer_id: str) -> Customer | None:
        """The deleted customer, or None when there was none."""
        path = f"/customers/{quote(customer_id, safe='')}"
        return self._retried(self._one, Customer, "DELETE", path)

    # -- product plans -------------------------------------------------------------------

    def current_plan(self, customer_id: str) -> PlanAssignment | None:
        """The customer's latest plan assignment, or None."""
        params = {"CustomerId": customer_id}
        return self._retried(self._one, PlanAssignment, "GET", PRICING_PATH, params=params)

    def plan_history(self, customer_id: str) -> list[PlanAssignment]:
        """Every plan assignment of the customer, oldest first."""
        params = {"CustomerId": customer_id}
        return self._retried(
            self._many, PlanAssignment, "GET", PRICING_PATH + "/list", params=params
        )

    def assign_plan(self, assignment: PlanAssignment) -> PlanAssignment:
        """POST one assignment (one attempt, never retried: see the module docstring)."""
        doc = self._one(PlanAssignment, "POST", PRICING_PATH, json=assignment.wire())
        return doc or assignment

    def ensure_plan(self, assignment: PlanAssignment) -> tuple[PlanAssignment, bool]:
        """Assign the plan unless the customer already has it; returns (the assignment in
        effect, whether it was assigned now).  Safe to repeat, so retried as a whole (a retry
        re-reads before it assigns).

        Without ``start_time_in_seconds``: skipped when the plan (and product) is the current
        one.  With it: skipped when the plan is the one in effect at that time by the
        history's start times (among assignments starting at the same second, any one), so
        re-applying an older assignment after newer ones, as a replay does, changes nothing.
        """
        return self._retried(self._ensure_plan_once, assignment)

    def _ensure_plan_once(self, assignment: PlanAssignment) -> tuple[PlanAssignment, bool]:
        params = {"CustomerId": assignment.customer_id}
        start = assignment.start_time_in_seconds
        if start is None:
            current = self._one(PlanAssignment, "GET", PRICING_PATH, params=params)
            effective = [current] if current is not None else []
        else:
            history = self._many(PlanAssignment, "GET", PRICING_PATH + "/list", params=params)
            effective = _in_effect(history, start)
        for plan in effective:
            if (
                plan.product_plan_id == assignment.product_plan_id
                and plan.product_id == assignment.product_id
            ):
                return plan, False
        return self.assign_plan(assignment), True

    # -- meters --------------------------------------------------------------------------

    def list_meters(self, meter_api_name: str | None = None) -> list[Meter]:
        params = {"meterApiName": meter_api_name} if meter_api_name else None
        return self._retried(self._many, Meter, "GET", "/meters", params=params)

    def get_meter(self, meter_id: str) -> Meter | None:
        """The meter, or None when it does not exist (404)."""
        return self._retried(self._get_meter_once, meter_id)

    def _get_meter_once(self, meter_id: str) -> Meter | None:
        try:
            return self._one(Meter, "GET", f"/meters/{quote(meter_id, safe='')}")
        except AmberfloApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create_meter(self, meter: Meter) -> Meter:
        """POST /meters (a meterApiName that exists answers 409: ``AmberfloApiError``)."""
        body = meter.model_copy(update={"label": meter.label or meter.meter_api_name}).wire()
        return self._retried(self._one, Meter, "POST", "/meters", json=body) or meter

    def update_meter(self, meter: Meter) -> Meter:
        """PUT /meters: replace the definition of the meter with ``meter.id``."""
        if not meter.id:
            raise FatalError(f"update_meter: meter {meter.meter_api_name!r} has no id")
        return self._retried(self._one, Meter, "PUT", "/meters", json=meter.wire()) or meter

    def delete_meter(self, meter_id: str) -> Meter | None:
        path = f"/meters/{quote(meter_id, safe='')}"
        return self._retried(self._one, Meter, "DELETE", path)

    # -- usage ---------------------------------------------------------------------------

    def usage(self, query: UsageQuery) -> UsageReport:
        """One usage report (``usage_query()`` builds the query)."""
        report = self._retried(self._one, UsageReport, "POST", "/usage", json=query.wire())
        return report or UsageReport()

    def usage_batch(self, queries: Sequence[UsageQuery]) -> list[UsageReport]:
        body = [q.wire() for q in queries]
        return self._retried(self._many, UsageReport, "POST", "/usage/batch", json=body)

    def usage_all(
        self,
        start_time_in_seconds: int,
        end_time_in_seconds: int | None = None,
        *,
        interval: Interval = "DAY",
        group_by_customer: bool = False,
        customer_id: str | None = None,
    ) -> list[UsageReport]:
        """SUM reports for every meter with usage in the range (GET /usage/all)."""
        params: JSON = {
            "startTimeInSeconds": start_time_in_seconds,
            "timeGroupingInterval": interval,
        }
        if end_time_in_seconds is not None:
            params["endTimeInSeconds"] = end_time_in_seconds
        if group_by_customer:
            params["groupBy"] = "customerId"
        if customer_id:
            params["customerId"] = customer_id
        return self._retried(self._many, UsageReport, "GET", "/usage/all", params=params)

    # -- ingest --------------------------------------------------------------------------

    def ingest(self, events: Sequence[Mapping[str, Any]], *, gzip: bool = True) -> int:
        """POST /ingest one request with ``events`` (at most 1,000); returns the number of
        records Amberflo acknowledged (``N`` of "N records were ingested")."""
        body = orjson.dumps(list(events))
        headers = {"Content-Type": "application/json"}
        if gzip:
            body = gzip_module.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        response = self._retried(
            self.request, "POST", "/ingest", data=body, headers=headers, base=self.ingest_url
        )
        head = response.text.strip().split(" ", 1)[0]
        return int(head) if head.isdigit() else len(events)

    # -- the local emulator only (untyped: test and demo tooling) -------------------------

    def emulator_stats(self) -> JSON:
        """Emulator counters: requests by status, events_accepted, duplicates, filtered,
        records_stored, ingest_requests."""
        return self._obj("GET", "/_emulator/stats")

    def emulator_totals(
        self, *, customer_id: str | None = None, meter_api_name: str | None = None
    ) -> list[JSON]:
        """Per (meterApiName, customerId): sum and count over every stored record."""
        params = {"customerId": customer_id, "meterApiName": meter_api_name}
        doc = self._obj("GET", "/_emulator/totals", params={k: v for k, v in params.items() if v})
        return list(doc["totals"])

    def emulator_records(
        self,
        after_id: int = 0,
        limit: int = 1000,
        *,
        customer_id: str | None = None,
        meter_api_name: str | None = None,
    ) -> JSON:
        """``{"records": [...], "next_after_id": int}`` in storage order."""
        params: JSON = {"after_id": after_id, "limit": limit}
        if customer_id:
            params["customerId"] = customer_id
        if meter_api_name:
            params["meterApiName"] = meter_api_name
        return self._obj("GET", "/_emulator/records", params=params)

    def emulator_delete_records(
        self,
        *,
        customer_id: str | None = None,
        meter_api_name: str | None = None,
        start_time_in_millis: int | None = None,
        end_time_in_millis: int | None = None,
        unique_id: str | None = None,
    ) -> int:
        """Delete stored records matching every given filter (at least one); returns how many."""
        params = {
            "customerId": customer_id,
            "meterApiName": meter_api_name,
            "startTimeInMillis": start_time_in_millis,
            "endTimeInMillis": end_time_in_millis,
            "uniqueId": unique_id,
        }
        given = {k: v for k, v in params.items() if v is not None}
        return int(self._obj("DELETE", "/_emulator/records", params=given)["deleted"])

    def inject_fault(
        self,
        status: int | None = None,
        count: int = 1,
        *,
        retry_after: float | None = None,
        latency_ms: int = 0,
        path: str | None = None,
        method: str | None = None,
        after: bool = False,
    ) -> JSON:
        """Queue an emulator fault for the next ``count`` requests matching ``path`` and
        ``method``; ``after``: process the request, then delay or replace its answer."""
        spec: JSON = {"count": count, "latency_ms": latency_ms, "after": after}
        for key, value in (
            ("status", status),
            ("retry_after", retry_after),
            ("path", path),
            ("method", method),
        ):
            if value is not None:
                spec[key] = value
        return self._obj("POST", "/_emulator/faults", json=spec)

    def clear_faults(self) -> None:
        self.request("DELETE", "/_emulator/faults")


def _in_effect(history: Sequence[PlanAssignment], at_s: int) -> list[PlanAssignment]:
    """The assignments starting last at or before ``at_s`` (several when they share a start)."""
    started = [p for p in history if (p.start_time_in_seconds or 0) <= at_s]
    if not started:
        return []
    latest = max(p.start_time_in_seconds or 0 for p in started)
    return [p for p in started if (p.start_time_in_seconds or 0) == latest]
