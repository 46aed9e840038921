"""Test and drill controls under ``/_emulator`` (API key required, never faulted or counted).

* ``POST /_emulator/faults`` queues a fault (see ``FaultIn``); several may be queued and each
  request consumes one use of the first matching one.  ``GET`` lists, ``DELETE`` clears.
* ``GET /_emulator/stats`` → ``{"requests": {"<status>": n}, "events_accepted",
  "duplicates", "filtered", "records_stored", "ingest_requests", "s3_objects_ingested",
  "s3_objects_rejected"}``.  ``requests`` counts the responses of every route except
  ``/healthz`` and ``/_emulator/*``; ``events_accepted`` is the sum of the N of "N records
  were ingested" plus the records of the S3 objects ingested; ``ingest_requests`` counts the
  /ingest requests answered 200, ``s3_objects_*`` the objects of the S3 intake.  All but
  ``records_stored`` (the stored rows, across restarts) count since this process started.
  For a fresh database:
  ``events_accepted == records_stored + duplicates + filtered``.
* ``GET /_emulator/records?after_id=&limit=&customerId=&meterApiName=`` → stored records in
  id order and ``next_after_id`` (the last id returned, or ``after_id`` when none were, so a
  poller can keep passing it back).
* ``DELETE /_emulator/records?customerId=&meterApiName=&startTimeInMillis=&endTimeInMillis=
  &uniqueId=`` deletes the stored records matching every given filter (time range
  ``[start, end)`` on meterTimeInMillis; ``all=true`` instead of filters deletes every
  record) → ``{"deleted": n}``.  For drills that need usage to go missing behind the
  connector's back (``amberflo-connector reconcile`` must notice).
* ``GET /_emulator/totals?customerId=&meterApiName=`` → per (meter, customer) sum and count
  over every stored record.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request

from connector.emulator.middleware import Fault
from connector.emulator.models import FaultIn
from connector.emulator.state import ApiError, state

router = APIRouter(prefix="/_emulator", tags=["Emulator controls"])


def _faults_json(request: Request) -> dict[str, Any]:
    return {"faults": [f.as_json() for f in state(request).faults.queue]}


@router.post("/faults")
async def add_emulator_fault(fault: FaultIn, request: Request) -> dict[str, Any]:
    """Queue a fault; returns every queued fault."""
    state(request).faults.queue.append(
        Fault(
            remaining=fault.count,
            status=fault.status,
            retry_after=fault.retry_after,
            latency_ms=fault.latency_ms,
            path=fault.path,
            method=fault.method.upper() if fault.method else None,
            after=fault.after,
        )
    )
    return _faults_json(request)


@router.get("/faults")
async def list_emulator_faults(request: Request) -> dict[str, Any]:
    return _faults_json(request)


@router.delete("/faults")
async def clear_emulator_faults(request: Request) -> dict[str, Any]:
    state(request).faults.queue.clear()
    return _faults_json(request)


@router.get("/stats")
async def emulator_stats(request: Request) -> dict[str, Any]:
    return state(request).stats_json()


@router.get("/records")
def emulator_records(
    request: Request,
    after_id: int = Query(0, ge=0, le=2**63 - 1),
    limit: int = Query(1000, ge=1, le=10_000),
    customerId: str | None = None,
    meterApiName: str | None = None,
) -> dict[str, Any]:
    rows = state(request).store.records_page(after_id, limit, customerId, meterApiName)
    out = [
        {
            "id": rid,
            "customerId": cid,
            "meterApiName": meter,
            "meterValue": value,
            "meterTimeInMillis": t,
            "uniqueId": uid,
            "dimensions": orjson.loads(dims) if dims else {},
            "ingestedAtMillis": ingested,
        }
        for rid, cid, meter, value, t, uid, dims, ingested in rows
    ]
    return {"records": out, "next_after_id": rows[-1][0] if rows else after_id}


@router.delete("/records")
def delete_emulator_records(
    request: Request,
    customerId: str | None = Query(None, min_length=1),
    meterApiName: str | None = Query(None, min_length=1),
    startTimeInMillis: int | None = Query(None, ge=0, le=2**63 - 1),
    endTimeInMillis: int | None = Query(None, ge=0, le=2**63 - 1),
    uniqueId: str | None = Query(None, min_length=1),
    delete_all: bool = Query(False, alias="all"),
) -> dict[str, Any]:
    """Delete stored records matching every given filter; ``all=true`` deletes everything."""
    filters = (customerId, meterApiName, startTimeInMillis, endTimeInMillis, uniqueId)
    if delete_all == any(f is not None for f in filters):
        raise ApiError(
            400,
            "BAD_REQUEST",
            "give at least one filter (customerId, meterApiName, startTimeInMillis, "
            "endTimeInMillis, uniqueId) or all=true, not both",
        )
    deleted = state(request).store.delete_records(
        customer_id=customerId,
        meter_api_name=meterApiName,
        start_ms=startTimeInMillis,
        end_ms=endTimeInMillis,
        unique_id=uniqueId,
    )
    return {"deleted": deleted}


@router.get("/totals")
def emulator_totals(
    request: Request, customerId: str | None = None, meterApiName: str | None = None
) -> dict[str, Any]:
    rows = state(request).store.totals(customerId, meterApiName)
    return {
        "totals": [
            {"meterApiName": meter, "customerId": cid, "sum": total, "count": count}
            for meter, cid, total, count in rows
        ]
    }
