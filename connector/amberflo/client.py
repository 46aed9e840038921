"""A small, synchronous client for the Amberflo API (and the local emulator's extras).

For tools, the demo and tests: customers, product plans, meters, usage reports and a simple
``ingest``.  The connector's high-throughput delivery path is ``connector.sinks.api``, not this.

Every method either returns the decoded JSON of a 2xx answer or raises:

* ``FatalError``       – 401/403: the API key was refused (the message names the URL).
* ``ThrottledError``   – 429/503, with the server's ``Retry-After`` in seconds when given.
* ``RetryableError``   – other 5xx, 408, connection failures and timeouts.
* ``AmberfloApiError`` – any other 4xx (a bad request: fix the call, do not retry); it is a
  ``FatalError`` carrying ``status``, ``code`` and ``details`` from the JSON error body.

Nothing is retried here; the caller decides.
"""

from __future__ import annotations

import gzip as gzip_module
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import orjson
import requests

from connector import __version__
from connector.errors import FatalError, RetryableError, ThrottledError
from connector.sinks.api import parse_retry_after

JSON = dict[str, Any]

DEFAULT_BASE_URL = "https://app.amberflo.io"
PRICING_PATH = "/payments/pricing/amberflo/customer-pricing"


class AmberfloApiError(FatalError):
    """A 4xx answer other than 401/403/408/429: the request itself is wrong."""

    def __init__(
        self, message: str, *, status: int, code: str | None = None, details: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details


def usage_query(
    meter_api_name: str,
    start_time_in_seconds: int,
    end_time_in_seconds: int | None = None,
    *,
    aggregation: str = "SUM",
    interval: str = "DAY",
    group_by: Sequence[str] | None = None,
    filters: Mapping[str, Sequence[str]] | None = None,
    take: int | None = None,
    ascending: bool = False,
) -> JSON:
    """A live-shaped ``/usage`` query body."""
    time_range: JSON = {"startTimeInSeconds": start_time_in_seconds}
    if end_time_in_seconds is not None:
        time_range["endTimeInSeconds"] = end_time_in_seconds
    query: JSON = {
        "meterApiName": meter_api_name,
        "aggregation": aggregation,
        "timeGroupingInterval": interval,
        "timeRange": time_range,
    }
    if group_by:
        query["groupBy"] = list(group_by)
    if filters:
        query["filter"] = {k: list(v) for k, v in filters.items()}
    if take is not None:
        query["take"] = {"limit": take, "isAscending": ascending}
    return query


class AmberfloClient:
    """Amberflo API at ``base_url`` with ``api_key``; ``ingest_url`` defaults to base_url.

    Usable as a context manager (closes its HTTP session).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = "",
        *,
        ingest_url: str | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        if not api_key:
            raise FatalError("an Amberflo API key is required")
        self.base_url = base_url.rstrip("/")
        self.ingest_url = (ingest_url or base_url).rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "X-API-KEY": api_key,
                "Accept": "application/json",
                "User-Agent": f"amberflo-kafka-connector/{__version__}",
            }
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
        """Send one request; returns the 2xx response or raises (see the module docstring)."""
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

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise RetryableError(
                f"{method} {response.url}: HTTP {response.status_code} without a JSON body"
            ) from exc

    # -- customers -----------------------------------------------------------------------

    def list_customers(self) -> list[JSON]:
        return self._list("GET", "/customers")

    def get_customer(self, customer_id: str) -> JSON | None:
        """The customer, or None when Amberflo answers ``{}`` (absent)."""
        doc = self._obj("GET", "/customers", params={"customerId": customer_id})
        return doc or None

    def create_customer(self, customer_id: str, customer_name: str, **fields: Any) -> JSON:
        """POST /customers; ``fields`` are further customer fields (customerEmail, traits…)."""
        body = {"customerId": customer_id, "customerName": customer_name, **fields}
        return self._obj("POST", "/customers", json=body)

    def upsert_customer(self, customer_id: str, customer_name: str, **fields: Any) -> JSON:
        """PUT /customers: create or replace (fields not given are dropped)."""
        body = {"customerId": customer_id, "customerName": customer_name, **fields}
        return self._obj("PUT", "/customers", json=body)

    def delete_customer(self, customer_id: str) -> JSON:
        return self._obj("DELETE", f"/customers/{quote(customer_id, safe='')}")

    # -- product plans -------------------------------------------------------------------

    def assign_plan(
        self,
        customer_id: str,
        product_plan_id: str,
        *,
        product_id: str = "1",
        start_time_in_seconds: int | None = None,
        end_time_in_seconds: int | None = None,
    ) -> JSON:
        body: JSON = {
            "customerId": customer_id,
            "productPlanId": product_plan_id,
            "productId": product_id,
        }
        if start_time_in_seconds is not None:
            body["startTimeInSeconds"] = start_time_in_seconds
        if end_time_in_seconds is not None:
            body["endTimeInSeconds"] = end_time_in_seconds
        return self._obj("POST", PRICING_PATH, json=body)

    def get_plan(self, customer_id: str) -> JSON | None:
        """The customer's latest plan assignment, or None."""
        doc = self._obj("GET", PRICING_PATH, params={"CustomerId": customer_id})
        return doc or None

    def list_plans(self, customer_id: str) -> list[JSON]:
        return self._list("GET", PRICING_PATH + "/list", params={"CustomerId": customer_id})

    # -- meters --------------------------------------------------------------------------

    def create_meter(
        self,
        meter_api_name: str,
        label: str | None = None,
        *,
        meter_type: str = "sum_of_all_usage",
        dimensions: Sequence[str] = (),
        description: str | None = None,
    ) -> JSON:
        body: JSON = {
            "meterApiName": meter_api_name,
            "label": label or meter_api_name,
            "meterType": meter_type,
            "dimensions": list(dimensions),
        }
        if description is not None:
            body["description"] = description
        return self._obj("POST", "/meters", json=body)

    def list_meters(self, meter_api_name: str | None = None) -> list[JSON]:
        params = {"meterApiName": meter_api_name} if meter_api_name else None
        return self._list("GET", "/meters", params=params)

    def get_meter(self, meter_id: str) -> JSON | None:
        """The meter, or None when it does not exist (404)."""
        try:
            return self._obj("GET", f"/meters/{quote(meter_id, safe='')}")
        except AmberfloApiError as exc:
            if exc.status == 404:
                return None
            raise

    # -- usage ---------------------------------------------------------------------------

    def query_usage(self, query: Mapping[str, Any]) -> JSON:
        """One usage report (build ``query`` with ``usage_query()`` or by hand)."""
        return self._obj("POST", "/usage", json=dict(query))

    def query_usage_batch(self, queries: Sequence[Mapping[str, Any]]) -> list[JSON]:
        return self._list("POST", "/usage/batch", json=[dict(q) for q in queries])

    def usage_all(
        self,
        start_time_in_seconds: int,
        end_time_in_seconds: int | None = None,
        *,
        interval: str = "DAY",
        group_by_customer: bool = False,
        customer_id: str | None = None,
    ) -> list[JSON]:
        """SUM reports for every meter (GET /usage/all)."""
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
        return self._list("GET", "/usage/all", params=params)

    # -- ingest --------------------------------------------------------------------------

    def ingest(self, events: Sequence[Mapping[str, Any]], *, gzip: bool = True) -> int:
        """POST /ingest one request with ``events`` (at most 1,000); returns the number of
        records Amberflo acknowledged (``N`` of "N records were ingested")."""
        body = orjson.dumps(list(events))
        headers = {"Content-Type": "application/json"}
        if gzip:
            body = gzip_module.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        response = self.request("POST", "/ingest", data=body, headers=headers, base=self.ingest_url)
        head = response.text.strip().split(" ", 1)[0]
        return int(head) if head.isdigit() else len(events)

    # -- the local emulator only ---------------------------------------------------------

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
    ) -> JSON:
        """Queue an emulator fault for the next ``count`` requests matching ``path``."""
        spec: JSON = {"count": count, "latency_ms": latency_ms}
        for key, value in (("status", status), ("retry_after", retry_after), ("path", path)):
            if value is not None:
                spec[key] = value
        return self._obj("POST", "/_emulator/faults", json=spec)

    def clear_faults(self) -> None:
        self.request("DELETE", "/_emulator/faults")


def _error_for(method: str, url: str, response: requests.Response) -> Exception:
    status = response.status_code
    message, code, details = _error_body(response)
    where = f"HTTP {status} from {method} {url}"
    if status in (401, 403):
        return FatalError(f"Amberflo rejected the API key ({where}: {message}); check the key")
    if status in (429, 503):
        return ThrottledError(
            f"{where}: {message}",
            http_status=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500 or status == 408:
        return RetryableError(f"{where}: {message}", http_status=status)
    return AmberfloApiError(f"{where}: {message}", status=status, code=code, details=details)


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
