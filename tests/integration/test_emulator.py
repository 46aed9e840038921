"""The emulator over real HTTP: auth, ingest formats and limits, validation, dedupe, stats,
records/totals, filtering rules, error shapes and restart durability."""

from __future__ import annotations

import gzip
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests

from connector.embedded import EmbeddedEmulator
from tests.conftest import Emulator
from tests.integration.emulator_support import T0, Api, events_for, session_api, unique


@pytest.fixture
def api(amberflo_emulator: Emulator) -> Iterator[Api]:
    yield from session_api(amberflo_emulator)


class TestAuth:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("POST", "/ingest"),
            ("POST", "/ingest/"),
            ("GET", "/customers"),
            ("POST", "/usage"),
            ("GET", "/meter-definition"),
            ("GET", "/_emulator/stats"),
            ("POST", "/_emulator/faults"),
            ("GET", "/openapi.json"),
            ("GET", "/no-such-route"),
        ],
    )
    @pytest.mark.parametrize("key", [None, "wrong-key"])
    def test_missing_or_wrong_key_is_401(
        self, amberflo_emulator: Emulator, method: str, path: str, key: str | None
    ) -> None:
        headers = {"X-API-KEY": key} if key else {}
        r = requests.request(
            method, amberflo_emulator.base_url + path, headers=headers, data=b"[]", timeout=10
        )
        assert r.status_code == 401
        body = r.json()
        assert body["code"] == "UNAUTHORIZED" and body["message"]

    def test_header_name_is_case_insensitive(self, amberflo_emulator: Emulator) -> None:
        for name in ("x-api-key", "X-Api-Key", "X-API-KEY"):
            r = requests.get(
                amberflo_emulator.base_url + "/customers",
                headers={name: amberflo_emulator.api_key},
                timeout=10,
            )
            assert r.status_code == 200, name

    def test_healthz_needs_no_key(self, amberflo_emulator: Emulator) -> None:
        r = requests.get(amberflo_emulator.base_url + "/healthz", timeout=10)
        assert r.status_code == 200 and r.json() == {"status": "ok"}


class TestIngestFormats:
    def test_single_object(self, api: Api) -> None:
        customer = unique("obj")
        r = api.ingest(events_for(customer, "calls", [5])[0])
        assert r.status_code == 200 and r.text == "1 records were ingested"
        (rec,) = api.records(customer)
        assert rec["meterApiName"] == "calls" and rec["meterValue"] == 5.0
        assert rec["meterTimeInMillis"] == T0 and rec["uniqueId"] == f"{customer}-0"
        assert rec["dimensions"] == {}
        assert abs(rec["ingestedAtMillis"] - time.time() * 1000) < 60_000
        assert set(rec) == {
            "id",
            "customerId",
            "meterApiName",
            "meterValue",
            "meterTimeInMillis",
            "uniqueId",
            "dimensions",
            "ingestedAtMillis",
        }

    @pytest.mark.parametrize("path", ["/ingest", "/ingest/"])
    @pytest.mark.parametrize("gzipped", [False, True])
    def test_array_plain_or_gzip_with_or_without_slash(
        self, api: Api, path: str, gzipped: bool
    ) -> None:
        customer = unique("arr")
        r = api.ingest(events_for(customer, "calls", [1, 2, 3]), gzipped=gzipped, path=path)
        assert r.status_code == 200 and r.text == "3 records were ingested"
        assert sorted(rec["meterValue"] for rec in api.records(customer)) == [1.0, 2.0, 3.0]

    @pytest.mark.parametrize("gzipped", [False, True])
    def test_ndjson(self, api: Api, gzipped: bool) -> None:
        customer = unique("nd")
        body = b"\n".join(orjson.dumps(e) for e in events_for(customer, "calls", [1, 2])) + b"\n"
        headers = {"Content-Type": "application/x-ndjson"}
        if gzipped:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        r = api.post("/ingest", data=body, headers=headers)
        assert r.status_code == 200 and r.text == "2 records were ingested"
        assert len(api.records(customer)) == 2

    def test_values_expand_into_one_record_per_meter(self, api: Api) -> None:
        customer = unique("vals")
        event = {
            "customerId": customer,
            "meterTimeInMillis": T0,
            "uniqueId": "multi",
            "values": {"calls": 2, "bytes": 1024.5, "errors": 0},
            "dimensions": {"region": "eu"},
        }
        r = api.ingest([event])
        assert r.status_code == 200 and r.text == "3 records were ingested"
        got = {(rec["meterApiName"], rec["meterValue"]) for rec in api.records(customer)}
        assert got == {("calls", 2.0), ("bytes", 1024.5), ("errors", 0.0)}
        assert all(rec["dimensions"] == {"region": "eu"} for rec in api.records(customer))

    def test_unknown_meters_customers_and_keys_are_accepted(self, api: Api) -> None:
        customer = unique("never-created")
        event = {**events_for(customer, unique("no-such-meter"), [1])[0], "extra": {"x": [1]}}
        assert api.ingest([event]).status_code == 200
        assert len(api.records(customer)) == 1


class TestIngestRejections:
    def test_invalid_events_reject_the_whole_request_with_details(self, api: Api) -> None:
        customer = unique("bad")
        good = events_for(customer, "calls", [1, 2, 3])
        events = [
            good[0],
            {**good[1], "customerId": ""},
            good[2],
            {"customerId": customer, "meterApiName": "calls", "meterValue": "x"},
            "not an object",
        ]
        before = api.stats()
        r = api.ingest(events)
        assert r.status_code == 400
        body = r.json()
        assert body["code"] == "BAD_REQUEST" and body["message"]
        assert {(d["index"], d["field"]) for d in body["details"]} == {
            (1, "customerId"),
            (3, "meterValue"),
            (3, "meterTimeInMillis"),
            (4, None),
        }
        assert all(isinstance(d["problem"], str) and d["problem"] for d in body["details"])
        assert api.records(customer) == []
        after = api.stats()
        assert after["events_accepted"] == before["events_accepted"]
        assert after["records_stored"] == before["records_stored"]

    @pytest.mark.parametrize(
        "body", [b"{not json", b"42", b"", b'"text"', b'[{"customerId": "a"}, {"bad": ']
    )
    def test_unparseable_body_is_400(self, api: Api, body: bytes) -> None:
        r = api.post("/ingest", data=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"

    def test_bad_gzip_is_400_and_unknown_encoding_415(self, api: Api) -> None:
        r = api.post("/ingest", data=b"plain", headers={"Content-Encoding": "gzip"})
        assert r.status_code == 400
        r = api.post("/ingest", data=b"[]", headers={"Content-Encoding": "br"})
        assert r.status_code == 415 and r.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"

    def test_more_than_1000_events_is_413(self, api: Api) -> None:
        customer = unique("many")
        r = api.ingest(events_for(customer, "calls", [1] * 1001), gzipped=True)
        assert r.status_code == 413
        assert r.json()["code"] == "PAYLOAD_TOO_LARGE" and "1000" in r.json()["message"]
        assert api.records(customer) == []
        assert api.ingest(events_for(customer, "calls", [1] * 1000), gzipped=True).ok

    @pytest.mark.parametrize("gzipped", [False, True])
    def test_more_than_1_mib_is_413(self, api: Api, gzipped: bool) -> None:
        customer = unique("big")
        event = {**events_for(customer, "calls", [1])[0], "dimensions": {"pad": "x" * 1_100_000}}
        r = api.ingest([event], gzipped=gzipped)
        assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE"
        assert api.records(customer) == []


class TestDedupe:
    def test_identical_event_is_discarded_and_counted_as_duplicate(self, api: Api) -> None:
        customer = unique("dup")
        events = events_for(customer, "calls", [7])
        before = api.stats()
        assert api.ingest(events).text == "1 records were ingested"
        # The count acknowledges every valid record, duplicates included.
        assert api.ingest(events + events, gzipped=True).text == "2 records were ingested"
        assert len(api.records(customer)) == 1
        after = api.stats()
        assert after["events_accepted"] - before["events_accepted"] == 3
        assert after["duplicates"] - before["duplicates"] == 2
        assert after["records_stored"] - before["records_stored"] == 1
        assert after["ingest_requests"] - before["ingest_requests"] == 2

    @pytest.mark.parametrize(
        "change",
        [
            {"uniqueId": "another"},
            {"meterApiName": "other-meter"},
            {"meterValue": 8},
            {"meterTimeInMillis": T0 + 1},
            {"dimensions": {"region": "us"}},
        ],
    )
    def test_any_attribute_different_is_a_new_record(
        self, api: Api, change: dict[str, object]
    ) -> None:
        customer = unique("diff")
        base = {**events_for(customer, "calls", [7])[0], "dimensions": {"region": "eu"}}
        assert api.ingest([base]).ok
        assert api.ingest([{**base, **change}]).ok
        assert len(api.records(customer)) == 2

    def test_other_customer_is_a_new_record(self, api: Api) -> None:
        first, second = unique("c"), unique("c")
        base = events_for(first, "calls", [7])[0]
        assert api.ingest([base, {**base, "customerId": second}]).ok
        assert len(api.records(first)) == 1 and len(api.records(second)) == 1

    def test_same_value_as_int_or_float_and_reordered_dimensions_are_duplicates(
        self, api: Api
    ) -> None:
        customer = unique("same")
        base = {**events_for(customer, "calls", [3])[0], "dimensions": {"a": "1", "b": "2"}}
        same = {**base, "meterValue": 3.0, "dimensions": {"b": "2", "a": "1"}}
        assert api.ingest([base, same]).ok
        assert len(api.records(customer)) == 1


class TestControls:
    def test_stats_shape(self, api: Api) -> None:
        stats = api.stats()
        assert set(stats) == {
            "requests",
            "events_accepted",
            "duplicates",
            "filtered",
            "records_stored",
            "ingest_requests",
            "s3_objects_ingested",
            "s3_objects_rejected",
        }
        assert all(isinstance(k, str) and isinstance(v, int) for k, v in stats["requests"].items())
        assert all(isinstance(stats[k], int) for k in stats if k != "requests")

    def test_requests_are_counted_by_status_but_not_controls_or_healthz(self, api: Api) -> None:
        before = api.stats()["requests"]
        api.get("/customers")
        api.get(f"/meters/{unique('absent')}")
        requests.get(api.base_url + "/customers", timeout=10)  # 401
        api.get("/healthz")
        api.get("/_emulator/totals")
        after = api.stats()["requests"]
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        assert {k: v for k, v in delta.items() if v} == {"200": 1, "404": 1, "401": 1}

    def test_records_paging(self, api: Api) -> None:
        customer = unique("page")
        assert api.ingest(events_for(customer, "calls", list(range(5)))).ok
        params = {"customerId": customer, "limit": 2}
        first = api.get("/_emulator/records", params=params).json()
        assert [r["meterValue"] for r in first["records"]] == [0.0, 1.0]
        assert first["next_after_id"] == first["records"][-1]["id"]
        second = api.get(
            "/_emulator/records", params={**params, "after_id": first["next_after_id"]}
        ).json()
        assert [r["meterValue"] for r in second["records"]] == [2.0, 3.0]
        last = api.get(
            "/_emulator/records", params={**params, "after_id": second["next_after_id"]}
        ).json()
        assert [r["meterValue"] for r in last["records"]] == [4.0]
        empty = api.get(
            "/_emulator/records", params={**params, "after_id": last["next_after_id"]}
        ).json()
        assert empty == {"records": [], "next_after_id": last["next_after_id"]}

    def test_delete_records_by_customer_meter_and_time(self, api: Api) -> None:
        customer = unique("del")
        hourly = events_for(customer, "calls", [1, 2, 4, 8], step_ms=3_600_000)
        assert api.ingest(hourly + events_for(customer, "bytes", [100])).ok
        params = {
            "customerId": customer,
            "meterApiName": "calls",
            "startTimeInMillis": T0 + 3_600_000,
            "endTimeInMillis": T0 + 3 * 3_600_000,
        }
        r = api.delete("/_emulator/records", params=params)
        assert r.status_code == 200 and r.json() == {"deleted": 2}
        usage = api.post(
            "/usage",
            json={
                "meterApiName": "calls",
                "aggregation": "SUM",
                "timeGroupingInterval": "HOUR",
                "timeRange": {
                    "startTimeInSeconds": T0 // 1000,
                    "endTimeInSeconds": T0 // 1000 + 4 * 3600,
                },
                "filter": {"customerId": [customer]},
            },
        ).json()
        assert [v["value"] for v in usage["clientMeters"][0]["values"]] == [1.0, 0.0, 0.0, 8.0]
        totals = api.get("/_emulator/totals", params={"customerId": customer}).json()["totals"]
        assert [(t["meterApiName"], t["count"]) for t in totals] == [("bytes", 1), ("calls", 2)]
        assert api.ingest(hourly).ok  # a deleted record is no duplicate any more: stored again
        assert api.get("/_emulator/totals", params=params).json()["totals"][0]["count"] == 4

    def test_delete_records_needs_a_filter_or_all(self, api: Api) -> None:
        for params in ({}, {"all": "true", "customerId": "x"}, {"customerId": ""}):
            r = api.delete("/_emulator/records", params=params)
            assert r.status_code == 400, (params, r.text)
            assert r.json()["code"] == "BAD_REQUEST"

    def test_totals(self, api: Api) -> None:
        customer = unique("tot")
        assert api.ingest(events_for(customer, "calls", [1, 2.5, -0.5])).ok
        assert api.ingest(events_for(customer, "bytes", [100])).ok
        doc = api.get("/_emulator/totals", params={"customerId": customer}).json()
        assert doc == {
            "totals": [
                {"meterApiName": "bytes", "customerId": customer, "sum": 100.0, "count": 1},
                {"meterApiName": "calls", "customerId": customer, "sum": 3.0, "count": 3},
            ]
        }
        everything = api.get("/_emulator/totals").json()["totals"]
        assert {"meterApiName": "calls", "customerId": customer, "sum": 3.0, "count": 3} in (
            everything
        )


class TestFilteringRules:
    def test_excluded_events_are_acknowledged_not_stored_and_counted(self, api: Api) -> None:
        meter, customer = unique("filtered-meter"), unique("f")
        rule = {
            "meterApiName": meter,
            "dimensionName": "env",
            "dimensionValues": ["test", "dev"],
            "action": "EXCLUDE",
        }
        r = api.post("/meter-event-filtering-rules", json=rule)
        assert r.status_code == 200 and r.json()["ruleId"]
        events = events_for(customer, meter, [1, 2, 3, 4])
        for event, env in zip(events, ["prod", "test", "dev", None], strict=True):
            if env:
                event["dimensions"] = {"env": env}
        before = api.stats()
        r = api.ingest(events)
        assert r.status_code == 200 and r.text == "4 records were ingested"
        assert sorted(rec["meterValue"] for rec in api.records(customer)) == [1.0, 4.0]
        after = api.stats()
        assert after["filtered"] - before["filtered"] == 2
        assert after["events_accepted"] - before["events_accepted"] == 4

    def test_include_keeps_only_listed_values_and_other_meters_are_untouched(
        self, api: Api
    ) -> None:
        meter, customer = unique("incl-meter"), unique("i")
        rule = {
            "meterApiName": meter,
            "dimensionName": "region",
            "dimensionValues": ["eu"],
            "action": "include",
        }
        assert api.post("/meter-event-filtering-rules/", json=rule).ok
        events = events_for(customer, meter, [1, 2, 3]) + events_for(customer, "calls", [9])
        events[0]["dimensions"] = {"region": "eu"}
        events[1]["dimensions"] = {"region": "us"}
        events[3]["uniqueId"] = "other-meter"
        assert api.ingest(events).ok
        got = sorted((rec["meterApiName"], rec["meterValue"]) for rec in api.records(customer))
        assert got == [("calls", 9.0), (meter, 1.0)]

    def test_rules_are_listed_updated_and_deleted(self, api: Api) -> None:
        meter = unique("rules-meter")
        rule = {
            "meterApiName": meter,
            "dimensionName": "env",
            "dimensionValues": ["a"],
            "action": "EXCLUDE",
        }
        first = api.post("/meter-event-filtering-rules", json=rule).json()
        again = api.post(
            "/meter-event-filtering-rules", json={**rule, "dimensionValues": ["a", "b"]}
        ).json()
        assert again["ruleId"] == first["ruleId"]  # same meter, dimension, action: updated
        listed = api.get("/meter-event-filtering-rules", params={"meterApiName": meter}).json()
        assert listed == [again] and again["dimensionValues"] == ["a", "b"]
        assert api.delete(f"/meter-event-filtering-rules/{first['ruleId']}").ok
        assert api.get("/meter-event-filtering-rules", params={"meterApiName": meter}).json() == []
        assert api.delete(f"/meter-event-filtering-rules/{first['ruleId']}").status_code == 404

    def test_bad_rule_is_400(self, api: Api) -> None:
        r = api.post(
            "/meter-event-filtering-rules",
            json={"meterApiName": "m", "dimensionName": "d", "action": "MAYBE"},
        )
        assert r.status_code == 400 and r.json()["code"] == "BAD_REQUEST"


class TestErrorShapes:
    def test_unknown_route_and_method(self, api: Api) -> None:
        r = api.get("/no/such/route")
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
        r = api.delete("/ingest")
        assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED"

    def test_validation_errors_are_400_with_details(self, api: Api) -> None:
        r = api.post("/customers", json={"customerId": "x"})
        assert r.status_code == 400
        body = r.json()
        assert body["code"] == "BAD_REQUEST"
        assert any(d["field"].endswith("customerName") for d in body["details"])

    def test_json_body_is_read_whatever_the_content_type(self, api: Api) -> None:
        customer = unique("form")
        body = orjson.dumps({"customerId": customer, "customerName": "Form"})
        r = api.post(
            "/customers", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 200 and r.json()["customerId"] == customer


def _start(db: Path, log: Path) -> EmbeddedEmulator:
    return EmbeddedEmulator(db=db, api_key="restart-key", log_path=log)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_restart_with_the_same_db_keeps_everything(tmp_path: Path, stop: str) -> None:
    db, log = tmp_path / "emulator.db", tmp_path / "log"
    events = events_for("durable", "calls", [1, 2, 3])
    with _start(db, log) as emu:
        api = Api(emu.base_url, emu.api_key)
        assert api.ingest(events).ok
        assert api.post("/customers", json={"customerId": "durable", "customerName": "D"}).ok
        plan = {"customerId": "durable", "productPlanId": "gold"}
        assert api.post("/payments/pricing/amberflo/customer-pricing", json=plan).ok
        meter = {"meterApiName": "calls", "displayName": "Calls", "type": "SUM_OF_ALL_USAGE"}
        assert api.post("/meter-definition", json=meter).ok
        rule = {
            "meterApiName": "calls",
            "dimensionName": "env",
            "dimensionValues": ["test"],
            "action": "EXCLUDE",
        }
        assert api.post("/meter-event-filtering-rules", json=rule).ok
        if stop == "SIGKILL":
            emu.proc.send_signal(signal.SIGKILL)
            emu.proc.wait(10)

    with _start(db, log) as emu:
        api = Api(emu.base_url, emu.api_key)
        assert [r["meterValue"] for r in api.records("durable")] == [1.0, 2.0, 3.0]
        assert api.stats()["records_stored"] == 3
        assert api.get("/customers/durable").json()["customerName"] == "D"
        latest = api.get(
            "/payments/pricing/amberflo/customer-pricing", params={"CustomerId": "durable"}
        ).json()
        assert latest["productPlanId"] == "gold"
        assert api.get("/meter-definition/calls").json()["displayName"] == "Calls"
        # Dedupe and filtering rules survive too.
        blocked = {**events_for("durable", "calls", [5])[0], "uniqueId": "x"}
        blocked["dimensions"] = {"env": "test"}
        assert api.ingest([*events, blocked]).text == "4 records were ingested"
        stats = api.stats()
        assert stats["duplicates"] == 3 and stats["filtered"] == 1
        assert stats["records_stored"] == 3
