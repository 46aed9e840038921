"""Third-party clients run unchanged against the emulator:

* the seed's Arazzo workflow ``create-meter-and-ingest-event`` (createMeterDefinition, then
  ingestMeterEvents), executed step by step as written: operations resolved by operationId,
  runtime expressions evaluated, success criteria checked;
* the official Amberflo Python SDK (``amberflo-metering-python``), pointed at the emulator by
  its ``root_url`` class attributes: customers, product plans, threaded gzip ingest to
  ``/ingest/`` and usage queries.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import Emulator
from tests.integration.emulator_support import T0, Api, session_api, unique


@pytest.fixture
def api(amberflo_emulator: Emulator) -> Iterator[Api]:
    yield from session_api(amberflo_emulator)


# -- Arazzo ------------------------------------------------------------------------------

# The workflow's steps as the Arazzo document states them (runtime expressions verbatim).
WORKFLOW: dict[str, Any] = {
    "workflowId": "create-meter-and-ingest-event",
    "steps": [
        {
            "stepId": "createMeter",
            "operationId": "createMeterDefinition",
            "parameters": [{"name": "X-API-KEY", "in": "header", "value": "$inputs.apiKey"}],
            "requestBody": {
                "contentType": "application/json",
                "payload": {
                    "meterApiName": "$inputs.meterApiName",
                    "displayName": "$inputs.displayName",
                    "type": "$inputs.type",
                    "dimensions": [],
                },
            },
            "successCriteria": [{"condition": "$statusCode == 200"}],
            "outputs": {"meterApiName": "$response.body#/meterApiName"},
        },
        {
            "stepId": "ingestEvent",
            "operationId": "ingestMeterEvents",
            "parameters": [{"name": "X-API-KEY", "in": "header", "value": "$inputs.apiKey"}],
            "requestBody": {
                "contentType": "application/json",
                "payload": {
                    "meterApiName": "$steps.createMeter.outputs.meterApiName",
                    "customerId": "$inputs.customerId",
                    "meterValue": "$inputs.meterValue",
                    "meterTimeInMillis": "$inputs.meterTimeInMillis",
                    "uniqueId": "$inputs.uniqueId",
                },
            },
            "successCriteria": [{"condition": "$statusCode == 200"}],
            "outputs": {"ingestResult": "$response.body"},
        },
    ],
    "outputs": {
        "meterApiName": "$steps.createMeter.outputs.meterApiName",
        "ingestResult": "$steps.ingestEvent.outputs.ingestResult",
    },
}


class ArazzoRun:
    """Just enough of an Arazzo runner for this workflow's expressions."""

    def __init__(self, base_url: str, openapi: dict[str, Any], inputs: dict[str, Any]) -> None:
        self.base_url = base_url
        self.inputs = inputs
        self.steps: dict[str, dict[str, Any]] = {}
        self.operations = {
            op["operationId"]: (method.upper(), path)
            for path, ops in openapi["paths"].items()
            for method, op in ops.items()
        }

    def value(self, expr: Any, response: requests.Response | None = None) -> Any:
        if isinstance(expr, dict):
            return {k: self.value(v, response) for k, v in expr.items()}
        if isinstance(expr, list):
            return [self.value(v, response) for v in expr]
        if not isinstance(expr, str) or not expr.startswith("$"):
            return expr
        if expr.startswith("$inputs."):
            return self.inputs.get(expr.removeprefix("$inputs."))
        if m := re.fullmatch(r"\$steps\.([^.]+)\.outputs\.(.+)", expr):
            return self.steps[m[1]][m[2]]
        assert response is not None, expr
        if expr == "$statusCode":
            return response.status_code
        if expr == "$response.body":
            return response.text
        if expr.startswith("$response.body#/"):
            doc = response.json()
            for part in expr.removeprefix("$response.body#/").split("/"):
                doc = doc[part]
            return doc
        raise AssertionError(f"unsupported runtime expression {expr}")

    def condition(self, text: str, response: requests.Response) -> bool:
        lhs, op, rhs = text.split(" ", 2)
        assert op == "==", text
        return bool(self.value(lhs, response) == int(rhs))

    def run(self, workflow: dict[str, Any]) -> dict[str, Any]:
        for step in workflow["steps"]:
            method, path = self.operations[step["operationId"]]
            headers = {p["name"]: self.value(p["value"]) for p in step["parameters"]}
            headers["Content-Type"] = step["requestBody"]["contentType"]
            response = requests.request(
                method,
                self.base_url + path,
                headers=headers,
                json=self.value(step["requestBody"]["payload"]),
                timeout=30,
            )
            for criterion in step["successCriteria"]:
                assert self.condition(criterion["condition"], response), (
                    f"{step['stepId']}: {criterion['condition']} failed: "
                    f"{response.status_code} {response.text}"
                )
            self.steps[step["stepId"]] = {
                name: self.value(expr, response) for name, expr in step["outputs"].items()
            }
        return {name: self.value(expr) for name, expr in workflow["outputs"].items()}


@pytest.mark.parametrize("with_unique_id", [True, False])
def test_arazzo_create_meter_and_ingest_event(
    amberflo_emulator: Emulator, api: Api, with_unique_id: bool
) -> None:
    openapi = api.get("/openapi.json").json()
    meter, customer = unique("arazzo-meter"), unique("arazzo-customer")
    inputs: dict[str, Any] = {
        "apiKey": amberflo_emulator.api_key,
        "meterApiName": meter,
        "displayName": "Arazzo meter",
        "type": "SUM_OF_ALL_USAGE",
        "customerId": customer,
        "meterValue": 42.5,
        "meterTimeInMillis": T0,
    }
    if with_unique_id:
        inputs["uniqueId"] = "evt-1"
    run = ArazzoRun(amberflo_emulator.base_url, openapi, inputs)
    # The seed OpenAPI's operations map to the same method and path here.
    assert run.operations["createMeterDefinition"] == ("POST", "/meter-definition")
    assert run.operations["ingestMeterEvents"] == ("POST", "/ingest")

    outputs = run.run(WORKFLOW)

    assert outputs == {"meterApiName": meter, "ingestResult": "1 records were ingested"}
    assert api.get(f"/meter-definition/{meter}").json()["type"] == "SUM_OF_ALL_USAGE"
    (record,) = api.records(customer)
    assert record["meterApiName"] == meter and record["meterValue"] == 42.5
    assert record["uniqueId"] == ("evt-1" if with_unique_id else None)


# -- the official SDK ---------------------------------------------------------------------


def test_sdk_customers_and_product_plans(sdk: str) -> None:
    from metering.customer import CustomerApiClient, create_customer_payload
    from metering.customer_product_plan import (
        CustomerProductPlanApiClient,
        create_customer_product_plan_payload,
    )

    customers = CustomerApiClient(sdk)
    cid = unique("sdk-customer")
    payload = create_customer_payload(
        customer_id=cid,
        customer_name="SDK Corp",
        customer_email="billing@sdk.test",
        traits={"tier": "gold"},
    )
    created = customers.add_or_update(payload)  # GET (absent: {}) then POST
    assert created["customerId"] == cid and created["traits"] == {"tier": "gold"}
    assert customers.get(cid)["customerName"] == "SDK Corp"

    updated = customers.add_or_update({**payload, "customerName": "SDK Corp 2"})  # GET, PUT
    assert updated["customerName"] == "SDK Corp 2"
    assert updated["createTime"] == created["createTime"]
    assert any(c["customerId"] == cid for c in customers.list())

    plans = CustomerProductPlanApiClient(sdk)
    assigned = plans.add_or_update(create_customer_product_plan_payload(cid, "plan-gold"))
    assert assigned["productPlanId"] == "plan-gold" and assigned["productId"] == "1"
    assert plans.get(cid)["relationId"] == assigned["relationId"]
    assert [p["productPlanId"] for p in plans.list(cid)] == ["plan-gold"]


def test_sdk_threaded_gzip_ingest_and_usage(sdk: str, api: Api) -> None:
    from metering.ingest import IngestApiClient, create_ingest_client, create_ingest_payload
    from metering.usage import (
        AggregationType,
        TimeGroupingInterval,
        TimeRange,
        UsageApiClient,
        create_all_usage_query,
        create_usage_query,
    )

    meter, customer = unique("sdk-meter"), unique("sdk-ingest")
    errors: list[Any] = []
    producer = create_ingest_client(
        api_key=sdk, on_error=lambda exc, batch: errors.append(exc), send_interval_in_secs=0.1
    )
    for i in range(250):  # three SDK batches (100, 100, 50), each gzip'd to /ingest/
        assert producer.meter(
            meter_api_name=meter,
            meter_value=i % 5,
            meter_time_in_millis=T0 + i * 60_000,
            customer_id=customer,
            dimensions={"region": "eu" if i % 2 else "us"},
            unique_id=f"sdk-{i}",
        )
    producer.shutdown()
    assert errors == []
    records = api.records(customer)
    assert len(records) == 250 and sum(r["meterValue"] for r in records) == 500.0

    # The SDK's single-shot client reports the emulator's count text.
    direct = IngestApiClient(sdk).send(
        [
            create_ingest_payload(
                meter, 1, T0, customer, unique_id="sdk-0", dimensions={"region": "us"}
            )
        ]
    )
    assert direct == "1 records were ingested"
    assert len(api.records(customer)) == 251  # meterValue 1 differs from the first event's 0

    usage = UsageApiClient(sdk)
    start = T0 // 1000
    report = usage.get(
        create_usage_query(
            AggregationType.SUM,
            meter,
            TimeGroupingInterval.HOUR,
            TimeRange(start, start + 5 * 3600),
            group_by=["region"],
        )
    )
    totals = {m["group"]["groupInfo"]["region"]: m["groupValue"] for m in report["clientMeters"]}
    assert totals == {"eu": 250.0, "us": 251.0}
    assert len(report["secondsSinceEpochIntervals"]) == 5

    batch = usage.get(
        [
            create_usage_query(
                AggregationType.COUNT,
                meter,
                TimeGroupingInterval.DAY,
                TimeRange(start, start + 86_400),
            )
        ]
    )
    assert batch[0]["clientMeters"][0]["groupValue"] == 251.0

    everything = usage.get_all(
        create_all_usage_query(
            TimeGroupingInterval.DAY,
            TimeRange(start, start + 86_400),
            filter_by_customer_id=customer,
            group_by_customer_id=True,
        )
    )
    (mine,) = [r for r in everything if r["metadata"]["meterApiName"] == meter]
    assert mine["clientMeters"][0]["group"]["groupInfo"] == {"customerId": customer}
    assert mine["clientMeters"][0]["groupValue"] == 501.0


def test_sdk_sees_a_bad_key_as_an_api_error(sdk: str) -> None:
    from metering.customer import CustomerApiClient
    from metering.exceptions import ApiError

    with pytest.raises(ApiError) as err:
        CustomerApiClient("not-the-key").list()
    assert err.value.status_code == 401


def _short_backoff(*args: Any, **kwargs: Any) -> Iterator[float | None]:
    """The SDK's wait generator protocol (first value None), with 0.2 s waits."""
    yield None
    while True:
        yield 0.2


def test_sdk_producer_retries_through_a_503(sdk: str, api: Api) -> None:
    from metering.ingest import create_ingest_client

    customer = unique("sdk-retry")
    before = api.stats()["requests"].get("503", 0)
    api.post("/_emulator/faults", json={"status": 503, "count": 1, "path": "/ingest"})
    errors: list[Any] = []
    producer = create_ingest_client(
        api_key=sdk,
        on_error=lambda exc, batch: errors.append(exc),
        send_interval_in_secs=0.1,
        backoff_delay=_short_backoff,
    )
    assert producer.meter("calls", 1, T0, customer, unique_id="r-1")
    deadline = time.monotonic() + 20
    while not api.records(customer) and time.monotonic() < deadline:
        time.sleep(0.1)
    producer.shutdown()
    assert len(api.records(customer)) == 1
    assert errors == []
    assert api.stats()["requests"]["503"] - before == 1
