"""The typed, synchronous client of the Amberflo API (and the local emulator's extras).

Customers, product plans, meters, usage reports and a simple ``ingest``, for the commands
(``customers``, ``meters``, ``usage``), the demo and tests; the high-throughput delivery path
is ``connector.sinks.api``.  Bodies are the typed models of ``connector.amberflo.models``.

Errors (each call raises, or returns the decoded 2xx answer):

* ``FatalError``       – 401/403: the API key was refused (the message names the URL).
* ``ThrottledError``   – 429/503, with the server's ``Retry-After`` in seconds when given.
* ``RetryableError``   – other 5xx, 408, connection failures and timeouts.
* ``AmberfloApiError`` – any other 4xx (a bad request: fix the call, do not retry); it is a
  ``FatalError`` carrying ``status``, ``code`` and ``details`` from the JSON error body.

Retries: with a ``RetryPolicy`` (``from_settings`` gives the sink's: ``CONNECTOR_SINK__RETRY_*``)
every method retries Retryable/Throttled errors as one whole operation, and only operations
that are safe to repeat are retried: reads, ``PUT`` upserts, ``ensure_plan`` (which re-reads
the current plan before assigning), meter creation (a repeat answers 409, never a second
meter) and ingest (deterministic uniqueIds).  ``assign_plan`` is never retried: a repeated
POST would record a second assignment.  Without a policy nothing is retried.
"""

from __future__ import annotations

import gzip as gzip_module
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, Self, TypeVar
from urllib.parse import quote

import orjson
import requests
from pydantic import BaseModel, ValidationError

from connector import __version__
from connector.amberflo.models import (
    Aggregation,
    Customer,
    Interval,
    Meter,
    PlanAssignment,
    Take,
    TimeRange,
    UsageQuery,
    UsageReport,
)
from connector.amberflo.status import AmberfloApiError, classify
from connector.errors import FatalError, RetryableError
from connector.retry import RetryPolicy
from connector.settings import Settings

JSON = dict[str, Any]
M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_BASE_URL = "https://app.amberflo.io"
PRICING_PATH = "/payments/pricing/amberflo/customer-pricing"


def usage_query(
    meter_api_name: str,
    start_time_in_seconds: int,
    end_time_in_seconds: int | None = None,
    *,
    aggregation: Aggregation = "SUM",
    interval: Interval = "DAY",
    group_by: Sequence[str] | None = None,
    filters: Mapping[str, Sequence[str]] | None = None,
    take: int | None = None,
    ascending: bool = False,
) -> UsageQuery:
    """A ``/usage`` query; unset options are left out of the body."""
    time_range = TimeRange(start_time_in_seconds=start_time_in_seconds)
    if end_time_in_seconds is not None:
        time_range.end_time_in_seconds = end_time_in_seconds
    query = UsageQuery(
        meter_api_name=meter_api_name,
        aggregation=aggregation,
        time_grouping_interval=interval,
        time_range=time_range,
    )
    if group_by:
        query.group_by = list(group_by)
    if filters:
        query.filter = {k: list(v) for k, v in filters.items()}
    if take is not None:
        query.take = Take(limit=take, is_ascending=ascending)
    return query


class AmberfloClient:
    """Amberflo API at ``base_url`` with ``api_key``; ``ingest_url`` defaults to base_url.

    Usable as a context manager (closes its HTTP session).  Thread-safe for reads only as far
    as ``requests.Session`` is; give each thread its own client.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = "",
        *,
        ingest_url: str | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not api_key:
            raise FatalError("an Amberflo API key is required")
        self.base_url = base_url.rstrip("/")
        self.ingest_url = (ingest_url or base_url).rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "X-API-KEY": api_key,
                "Accept": "application/json",
                "User-Agent": f"amberflo-kafka-connector/{__version__}",
            }
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, retry_timeout_s: float | None = None) -> Self:
        """A client for ``settings.amberflo`` with the sink's retry policy; ``retry_timeout_s``
        (when given) bounds the retrying instead of ``CONNECTOR_SINK__RETRY_TIMEOUT_S``."""
        policy = RetryPolicy.from_settings(
            settings.sink, timeout_s=retry_timeout_s, name="Amberflo API call"
        )
        return cls(
            settings.amberflo.base_url,
            settings.amberflo.api_key.get_secret_value(),
            ingest_url=settings.amberflo.ingest_url,
            timeout=settings.sink.request_timeout_s,
            retry=policy,
        )

    # -- plumbing ------------------------------------------------------------------------

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        base: str | None = None,
    ) -> requests.Response:
        """Send one request (one attempt); returns the 2xx response or raises."""
        url = (base or self.base_url) + path
        hdrs = dict(headers or {})
        if json is not None:
            data = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        try:
            response = self.session.request(
                method, url, data=data, params=params, headers=hdrs, timeout=self.timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryableError(f"{method} {url} failed: {exc}") from exc
        if 200 <= response.status_code < 300:
            return response
        raise _error_for(method, url, response)

    def _retried(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.retry.call(fn, *args, **kwargs) if self.retry else fn(*args, **kwargs)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """One attempt; the decoded JSON body."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise RetryableError(
                f"{method} {response.url}: HTTP {response.status_code} without a JSON body"
            ) from exc

    def _obj(self, method: str, path: str, **kwargs: Any) -> JSON:
        doc = self._json(method, path, **kwargs)
        if not isinstance(doc, dict):
            raise RetryableError(f"{method} {path}: expected a JSON object, got {doc!r:.200}")
        return doc

    def _list(self, method: str, path: str, **kwargs: Any) -> list[JSON]:
        doc = self._json(method, path, **kwargs)
        if not isinstance(doc, list):
            raise RetryableError(f"{method} {path}: expected a JSON array, got {doc!r:.200}")
        return doc

    def _one(self, model: type[M], method: str, path: str, **kwargs: Any) -> M | None:
        """One attempt; the answer as ``model``, or None for Amberflo's ``{}`` (absent)."""
        doc = self._obj(method, path, **kwargs)
        return _typed(model, doc, method, path) if doc else None

    def _many(self, model: type[M], method: str, path: str, **kwargs: Any) -> list[M]:
        return [_typed(model, d, method, path) for d in self._list(method, path, **kwargs)]

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


def _typed(model: type[M], doc: Any, method: str, path: str) -> M:
    """``doc`` as ``model``; an answer of another shape is a FatalError naming the field."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise FatalError(
            f"unexpected answer to {method} {path}: {where}: {first['msg']} ({doc!r:.200})"
        ) from exc


def _error_for(method: str, url: str, response: requests.Response) -> Exception:
    message, code, details = _error_body(response)
    error = classify(
        response.status_code,
        response.headers,
        message,
        f"{method} {url}",
        code=code,
        details=details,
    )
    return error or RetryableError(f"{method} {url}: unexpected HTTP {response.status_code}")


def _error_body(response: requests.Response) -> tuple[str, str | None, Any]:
    """(message, code, details) of an error answer; the text itself when it is not JSON."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        message = str(doc.get("message") or doc.get("detail") or doc)
        code = doc.get("code")
        return message, str(code) if code is not None else None, doc.get("details")
    text = " ".join(response.text.split())[:300]
    return text or response.reason or "no body", None, None
