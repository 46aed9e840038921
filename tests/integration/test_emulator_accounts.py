"""Customers, product plans and meters (live /meters and the seed's /meter-definition)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import Emulator
from tests.integration.emulator_support import Api, session_api, unique

PRICING = "/payments/pricing/amberflo/customer-pricing"


@pytest.fixture
def api(amberflo_emulator: Emulator) -> Iterator[Api]:
    yield from session_api(amberflo_emulator)


class TestCustomers:
    def test_create_get_list(self, api: Api) -> None:
        cid = unique("cust")
        body = {
            "customerId": cid,
            "customerName": "Acme",
            "customerEmail": "ops@acme.test",
            "traits": {"tier": "gold"},
            "unknownField": "ignored",
        }
        r = api.post("/customers", json=body)
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["customerId"] == cid and created["customerName"] == "Acme"
        assert created["customerEmail"] == "ops@acme.test" and created["traits"] == {"tier": "gold"}
        assert created["enabled"] is True and "unknownField" not in created
        assert abs(created["createTime"] - time.time() * 1000) < 60_000
        assert created["updateTime"] == created["createTime"]
        assert api.get(f"/customers/{cid}").json() == created
        assert api.get("/customers", params={"customerId": cid}).json() == created
        assert api.get(f"/customers/{cid}/").json() == created
        assert created in api.get("/customers").json()

    def test_absent_customer_is_empty_object_with_200(self, api: Api) -> None:
        for r in (
            api.get(f"/customers/{unique('absent')}"),
            api.get("/customers", params={"customerId": unique("absent")}),
        ):
            assert r.status_code == 200 and r.json() == {}

    def test_post_existing_is_409(self, api: Api) -> None:
        cid = unique("dup")
        assert api.post("/customers", json={"customerId": cid, "customerName": "A"}).ok
        r = api.post("/customers", json={"customerId": cid, "customerName": "B"})
        assert r.status_code == 409 and r.json()["code"] == "CONFLICT"

    def test_put_replaces_and_keeps_create_time(self, api: Api) -> None:
        cid = unique("put")
        created = api.put(
            "/customers", json={"customerId": cid, "customerName": "A", "traits": {"x": "1"}}
        ).json()
        time.sleep(0.01)
        replaced = api.put("/customers", json={"customerId": cid, "customerName": "B"}).json()
        assert replaced["customerName"] == "B" and "traits" not in replaced
        assert replaced["createTime"] == created["createTime"]
        assert replaced["updateTime"] > created["updateTime"]
        assert api.get(f"/customers/{cid}").json() == replaced

    def test_delete(self, api: Api) -> None:
        cid = unique("del")
        created = api.post("/customers", json={"customerId": cid, "customerName": "A"}).json()
        assert api.delete(f"/customers/{cid}").json() == created
        assert api.get(f"/customers/{cid}").json() == {}
        assert api.delete(f"/customers/{cid}").json() == {}

    def test_stripe_flag_adds_a_stripe_id_trait(self, api: Api) -> None:
        cid = unique("stripe")
        created = api.post(
            "/customers",
            params={"autoCreateCustomerInStripe": "true"},
            json={"customerId": cid, "customerName": "S"},
        ).json()
        assert created["traits"]["stripeId"].startswith("cus_")


class TestPlans:
    def test_assign_latest_and_history(self, api: Api) -> None:
        cid = unique("plan")
        first = api.post(PRICING, json={"customerId": cid, "productPlanId": "basic"}).json()
        assert first["productId"] == "1" and first["relationId"]
        assert first["startTimeInSeconds"] == first["createdTimeInSeconds"]
        second = api.post(
            PRICING + "/",
            json={
                "customerId": cid,
                "productPlanId": "gold",
                "productId": "7",
                "startTimeInSeconds": 1_700_000_000,
                "endTimeInSeconds": 1_800_000_000,
            },
        ).json()
        assert second["relationId"] != first["relationId"]
        assert second["endTimeInSeconds"] == 1_800_000_000
        assert api.get(PRICING, params={"CustomerId": cid}).json() == second
        assert api.get(PRICING + "/list", params={"CustomerId": cid}).json() == [first, second]

    def test_without_plans_and_without_customer_id(self, api: Api) -> None:
        cid = unique("noplan")
        assert api.get(PRICING, params={"CustomerId": cid}).json() == {}
        assert api.get(PRICING + "/list", params={"CustomerId": cid}).json() == []
        r = api.get(PRICING)
        assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"


class TestMeters:
    def test_live_create_list_get_update_delete(self, api: Api) -> None:
        name = unique("meter")
        r = api.post(
            "/meters",
            json={
                "meterApiName": name,
                "label": "API calls",
                "meterType": "sum_of_all_usage",
                "dimensions": ["region"],
                "description": "calls",
            },
        )
        assert r.status_code == 200, r.text
        meter = r.json()
        assert meter["id"] and meter["meterType"] == "sum_of_all_usage"
        assert meter["createTime"] == meter["updateTime"]
        assert api.get("/meters", params={"meterApiName": name}).json() == [meter]
        assert api.get(f"/meters/{meter['id']}").json() == meter
        assert api.get(f"/meters/{name}").json() == meter  # by name too
        updated = api.put(
            "/meters",
            json={"id": meter["id"], "meterApiName": name, "label": "Calls", "meterType": "max"},
        ).json()
        assert updated["label"] == "Calls" and updated["meterType"] == "max"
        assert updated["createTime"] == meter["createTime"]
        assert api.delete(f"/meters/{meter['id']}").json()["id"] == meter["id"]
        assert api.get(f"/meters/{meter['id']}").status_code == 404

    def test_conflicts_and_missing(self, api: Api) -> None:
        name = unique("meter")
        assert api.post("/meters", json={"meterApiName": name}).ok
        r = api.post("/meters", json={"meterApiName": name})
        assert r.status_code == 409 and r.json()["code"] == "CONFLICT"
        r = api.post(
            "/meter-definition",
            json={"meterApiName": name, "displayName": "x", "type": "MAX_IN_PERIOD"},
        )
        assert r.status_code == 409
        for r in (
            api.get(f"/meters/{unique('absent')}"),
            api.delete(f"/meters/{unique('absent')}"),
            api.put("/meters", json={"meterApiName": unique("absent")}),
            api.get(f"/meter-definition/{unique('absent')}"),
            api.put(
                "/meter-definition",
                json={
                    "meterApiName": unique("absent"),
                    "displayName": "x",
                    "type": "SUM_OF_ALL_USAGE",
                },
            ),
        ):
            assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"

    def test_seed_view_and_live_view_are_the_same_meter(self, api: Api) -> None:
        name = unique("seed")
        body = {
            "meterApiName": name,
            "displayName": "Seed meter",
            "type": "UNIQUE_CUSTOMERS_COUNT",
            "dimensions": ["plan"],
        }
        r = api.post("/meter-definition", json=body)
        assert r.status_code == 200, r.text
        seed = r.json()
        assert seed == {
            "meterApiName": name,
            "displayName": "Seed meter",
            "label": name,
            "type": "UNIQUE_CUSTOMERS_COUNT",
            "meterTimeInMillis": seed["meterTimeInMillis"],
            "dimensions": ["plan"],
        }
        (live,) = api.get("/meters", params={"meterApiName": name}).json()
        assert live["label"] == "Seed meter" and live["meterType"] == "unique_customers_count"
        assert live["createTime"] == seed["meterTimeInMillis"]
        assert api.get(f"/meter-definition/{name}").json() == seed
        assert seed in api.get("/meter-definition").json()

        updated = api.put(
            "/meter-definition", json={**body, "displayName": "Renamed", "type": "MAX_IN_PERIOD"}
        ).json()
        assert updated["displayName"] == "Renamed" and updated["type"] == "MAX_IN_PERIOD"
        assert api.get(f"/meters/{live['id']}").json()["meterType"] == "max_in_period"

        live_update = api.put(
            "/meters", json={"id": live["id"], "meterApiName": name, "label": "L"}
        )
        assert live_update.ok
        assert api.get(f"/meter-definition/{name}").json()["displayName"] == "L"

        assert api.delete(f"/meter-definition/{name}").json()["meterApiName"] == name
        assert api.get(f"/meters/{live['id']}").status_code == 404

    def test_invalid_meter_bodies_are_400(self, api: Api) -> None:
        for path, body in (
            ("/meters", {"label": "no name"}),
            ("/meters", {"meterApiName": "x", "meterType": "sum of all"}),
            ("/meter-definition", {"meterApiName": "x", "type": "SUM_OF_ALL_USAGE"}),
            ("/meter-definition", {"meterApiName": "x", "displayName": "X", "dimensions": "a"}),
        ):
            r = api.post(path, json=body)
            assert r.status_code == 400, (path, body, r.text)
            assert r.json()["details"]
