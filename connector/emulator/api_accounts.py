"""Customers, product plans (customer pricing) and meters.

Contracts beyond the live docs (documented choices):

* ``POST /customers`` for an existing customerId → 409 CONFLICT; ``PUT /customers`` creates
  or replaces (createTime is kept).  ``GET`` and ``DELETE`` of an absent customer → 200 ``{}``.
  ``?autoCreateCustomerInStripe=true`` adds a fake ``stripeId`` trait.
* Plans: ``startTimeInSeconds`` defaults to the assignment time; the latest assignment is the
  last one posted; ``…/list`` is oldest first; a customer without plans gets ``{}`` / ``[]``.
* Meters: one table, two views.  ``/meters`` shows ``{id, label, meterApiName, meterType
  (lower-case), description, dimensions, createTime, updateTime}``; ``/meter-definition``
  shows ``{meterApiName, displayName (= label), label (= meterApiName), type (upper-case),
  meterTimeInMillis (= createTime), dimensions}``.  Creating an existing meterApiName → 409;
  reading/updating/deleting an absent meter → 404.  ``/meters/{id}`` also accepts a
  meterApiName.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from fastapi import APIRouter, Query, Request

from connector.emulator.documents import ConflictError
from connector.emulator.models import CustomerIn, CustomerPricingIn, MeterDefinitionIn, MeterIn
from connector.emulator.state import ApiError, not_found, now_ms, state
from connector.emulator.store import Store

router = APIRouter()

JSON = dict[str, Any]


def _conflict(what: str) -> ApiError:
    return ApiError(409, "CONFLICT", f"{what} already exists")


# -- customers --------------------------------------------------------------------------


def _customer_doc(body: CustomerIn, create_time: int | None = None) -> JSON:
    doc = body.model_dump(exclude_none=True)
    now = now_ms()
    doc["createTime"] = create_time or now
    doc["updateTime"] = now
    return doc


@router.get("/customers", tags=["Customers"])
def list_customers(
    request: Request, customerId: str | None = Query(None, min_length=1)
) -> JSON | list[JSON]:
    """Every customer, or with ``customerId`` that customer (``{}`` when absent)."""
    store = state(request).store
    if customerId is not None:
        return store.get_customer(customerId) or {}
    return store.list_customers()


@router.get("/customers/{customerId}", tags=["Customers"])
def get_customer(customerId: str, request: Request) -> JSON:
    """The customer, or ``{}`` (status 200) when absent."""
    return state(request).store.get_customer(customerId) or {}


@router.post("/customers", tags=["Customers"])
def create_customer(
    body: CustomerIn, request: Request, autoCreateCustomerInStripe: bool = False
) -> JSON:
    """Create a customer (409 when the customerId exists)."""
    doc = _customer_doc(body)
    if autoCreateCustomerInStripe:
        digest = hashlib.sha256(body.customerId.encode()).hexdigest()[:14]
        doc["traits"] = {**doc.get("traits", {}), "stripeId": f"cus_{digest}"}
    try:
        state(request).store.insert_customer(doc)
    except ConflictError as exc:
        raise _conflict(f"customer {body.customerId!r}") from exc
    return doc


@router.put("/customers", tags=["Customers"])
def put_customer(body: CustomerIn, request: Request) -> JSON:
    """Create or replace (omitted fields are dropped; createTime is kept)."""
    store = state(request).store
    old = store.get_customer(body.customerId)
    doc = _customer_doc(body, old["createTime"] if old else None)
    store.replace_customer(doc)
    return doc


@router.delete("/customers/{customerId}", tags=["Customers"])
def delete_customer(customerId: str, request: Request) -> JSON:
    """Delete; returns the deleted customer (``{}`` when there was none)."""
    store = state(request).store
    old = store.get_customer(customerId)
    store.delete_customer(customerId)
    return old or {}


# -- product plans ----------------------------------------------------------------------

PRICING = "/payments/pricing/amberflo/customer-pricing"


def _customer_param(upper: str | None, lower: str | None) -> str:
    value = upper or lower
    if not value:
        raise ApiError(400, "BAD_REQUEST", "query parameter CustomerId is required")
    return value


@router.post(PRICING, tags=["Product plans"])
def assign_plan(body: CustomerPricingIn, request: Request) -> JSON:
    """Relate a customer to a product plan; returns the assignment with its relationId."""
    doc = body.model_dump(exclude_none=True)
    created = int(time.time())
    doc.setdefault("startTimeInSeconds", created)
    doc["relationId"] = str(uuid.uuid4())
    doc["createdTimeInSeconds"] = created
    state(request).store.add_pricing(doc)
    return doc


@router.get(PRICING, tags=["Product plans"])
def latest_plan(
    request: Request,
    CustomerId: str | None = Query(None, min_length=1),
    customerId: str | None = Query(None, min_length=1, description="Alias of CustomerId."),
) -> JSON:
    """The customer's latest plan assignment, or ``{}``."""
    history = state(request).store.pricing_history(_customer_param(CustomerId, customerId))
    return history[-1] if history else {}


@router.get(PRICING + "/list", tags=["Product plans"])
def plan_history(
    request: Request,
    CustomerId: str | None = Query(None, min_length=1),
    customerId: str | None = Query(None, min_length=1, description="Alias of CustomerId."),
) -> list[JSON]:
    """Every plan assignment of the customer, oldest first."""
    return state(request).store.pricing_history(_customer_param(CustomerId, customerId))


# -- meters -----------------------------------------------------------------------------


def live_view(doc: JSON) -> JSON:
    return dict(doc)


def seed_view(doc: JSON) -> JSON:
    return {
        "meterApiName": doc["meterApiName"],
        "displayName": doc["label"],
        "label": doc["meterApiName"],
        "type": doc["meterType"].upper(),
        "meterTimeInMillis": doc["createTime"],
        "dimensions": doc.get("dimensions", []),
    }


def _new_meter(
    store: Store, name: str, label: str, meter_type: str, dims: list[str], **extra: Any
) -> JSON:
    now = now_ms()
    doc: JSON = {
        "id": extra.pop("id", None) or str(uuid.uuid4()),
        "label": label,
        "meterApiName": name,
        "meterType": meter_type.lower(),
        "dimensions": dims,
        **{k: v for k, v in extra.items() if v is not None},
        "createTime": now,
        "updateTime": now,
    }
    try:
        store.insert_meter(doc)
    except ConflictError as exc:
        raise _conflict(f"meter {name!r}") from exc
    return doc


def _update_meter(store: Store, old: JSON, changes: JSON) -> JSON:
    doc = {**old, **{k: v for k, v in changes.items() if v is not None}}
    doc["meterType"] = str(doc["meterType"]).lower()
    doc["updateTime"] = now_ms()
    try:
        store.update_meter(doc)
    except ConflictError as exc:
        raise _conflict(f"meter {doc['meterApiName']!r}") from exc
    return doc


@router.post("/meters", tags=["Meters"])
def create_meter(body: MeterIn, request: Request) -> JSON:
    """Create a meter (409 when the meterApiName or id exists)."""
    return _new_meter(
        state(request).store,
        body.meterApiName,
        body.label or body.meterApiName,
        body.meterType,
        body.dimensions,
        id=body.id,
        description=body.description,
    )


@router.get("/meters", tags=["Meters"])
def list_meters(
    request: Request, meterApiName: str | None = Query(None, min_length=1)
) -> list[JSON]:
    """Every meter (or only the one named ``meterApiName``)."""
    meters = state(request).store.list_meters()
    return [live_view(m) for m in meters if meterApiName in (None, m["meterApiName"])]


@router.get("/meters/{meterId}", tags=["Meters"])
def get_meter(meterId: str, request: Request) -> JSON:
    doc = state(request).store.get_meter(meterId)
    if doc is None:
        raise not_found(f"meter {meterId!r}")
    return live_view(doc)


@router.put("/meters", tags=["Meters"])
def update_meter(body: MeterIn, request: Request) -> JSON:
    """Update the meter named by ``id`` (or, without id, by meterApiName)."""
    store = state(request).store
    old = store.get_meter(body.id) if body.id else store.get_meter_by_name(body.meterApiName)
    if old is None:
        raise not_found(f"meter {body.id or body.meterApiName!r}")
    return live_view(_update_meter(store, old, body.model_dump(exclude={"id"})))


@router.delete("/meters/{meterId}", tags=["Meters"])
def delete_meter(meterId: str, request: Request) -> JSON:
    store = state(request).store
    doc = store.get_meter(meterId)
    if doc is None or not store.delete_meter(doc["id"]):
        raise not_found(f"meter {meterId!r}")
    return live_view(doc)


@router.post("/meter-definition", tags=["Meter definitions"])
def create_meter_definition(body: MeterDefinitionIn, request: Request) -> JSON:
    """Create a meter (seed field names); 409 when the meterApiName exists."""
    doc = _new_meter(
        state(request).store, body.meterApiName, body.displayName, body.type, body.dimensions
    )
    return seed_view(doc)


@router.get("/meter-definition", tags=["Meter definitions"])
def list_meter_definitions(request: Request) -> list[JSON]:
    return [seed_view(m) for m in state(request).store.list_meters()]


@router.put("/meter-definition", tags=["Meter definitions"])
def update_meter_definition(body: MeterDefinitionIn, request: Request) -> JSON:
    """Update the meter named ``meterApiName`` (404 when absent)."""
    store = state(request).store
    old = store.get_meter_by_name(body.meterApiName)
    if old is None:
        raise not_found(f"meter {body.meterApiName!r}")
    changes = {"label": body.displayName, "meterType": body.type, "dimensions": body.dimensions}
    return seed_view(_update_meter(store, old, changes))


@router.get("/meter-definition/{meterApiName}", tags=["Meter definitions"])
def get_meter_definition_by_id(meterApiName: str, request: Request) -> JSON:
    doc = state(request).store.get_meter_by_name(meterApiName)
    if doc is None:
        raise not_found(f"meter {meterApiName!r}")
    return seed_view(doc)


@router.delete("/meter-definition/{meterApiName}", tags=["Meter definitions"])
def delete_meter_definition(meterApiName: str, request: Request) -> JSON:
    store = state(request).store
    doc = store.get_meter_by_name(meterApiName)
    if doc is None or not store.delete_meter(doc["id"]):
        raise not_found(f"meter {meterApiName!r}")
    return seed_view(doc)
