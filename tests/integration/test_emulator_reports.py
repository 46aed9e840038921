"""Usage reports over HTTP (/usage, /usage/batch, /usage/all) against hand-computed values.

Data (meter unique per test, times from 2024-01-01T00:00Z = JAN1, a Monday):

    customer a: JAN1 01:00 → 1 (region eu), JAN1 23:00 → 2 (eu), JAN2 12:00 → 4 (us)
    customer b: JAN1 02:00 → 10 (us),       JAN3 00:00 → 20 (eu)
    customer c: JAN9 00:00 → 100 (eu)       (next week)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Emulator
from tests.integration.emulator_support import Api, session_api, unique

JAN1 = 1_704_067_200
H, D = 3600, 86_400

DATA = [
    ("a", JAN1 + 1 * H, 1, "eu"),
    ("a", JAN1 + 23 * H, 2, "eu"),
    ("a", JAN1 + D + 12 * H, 4, "us"),
    ("b", JAN1 + 2 * H, 10, "us"),
    ("b", JAN1 + 2 * D, 20, "eu"),
    ("c", JAN1 + 8 * D, 100, "eu"),
]


@pytest.fixture
def api(amberflo_emulator: Emulator) -> Iterator[Api]:
    yield from session_api(amberflo_emulator)


@pytest.fixture
def meter(api: Api) -> str:
    name = unique("usage-meter")
    events = [
        {
            "customerId": customer,
            "meterApiName": name,
            "meterValue": value,
            "meterTimeInMillis": t * 1000,
            "uniqueId": f"{customer}-{t}",
            "dimensions": {"region": region},
        }
        for customer, t, value, region in DATA
    ]
    assert api.ingest(events, gzipped=True).ok
    return name


def usage(api: Api, path: str = "/usage", **query: Any) -> Any:
    r = api.post(path, json=query)
    assert r.status_code == 200, r.text
    return r.json()


def by_group(report: dict[str, Any]) -> dict[str, tuple[float, list[float]]]:
    out = {}
    for m in report["clientMeters"]:
        info = m["group"]["groupInfo"] if m["group"] else {}
        label = ",".join(f"{k}={v}" for k, v in sorted(info.items())) or "*"
        out[label] = (m["groupValue"], [v["value"] for v in m["values"]])
    return out


def test_daily_sum_by_customer_in_the_live_shape(api: Api, meter: str) -> None:
    report = usage(
        api,
        meterApiName=meter,
        aggregation="SUM",
        timeGroupingInterval="DAY",
        groupBy=["customerId"],
        timeRange={"startTimeInSeconds": JAN1 + 5 * H, "endTimeInSeconds": JAN1 + 4 * D},
    )
    assert report["metadata"] == {
        "meterApiName": meter,
        "aggregation": "SUM",
        "timeGroupingInterval": "DAY",
        "timeRange": {"startTimeInSeconds": JAN1 + 5 * H, "endTimeInSeconds": JAN1 + 4 * D},
        "groupBy": ["customerId"],
    }
    assert report["secondsSinceEpochIntervals"] == [JAN1, JAN1 + D, JAN1 + 2 * D, JAN1 + 3 * D]
    assert by_group(report) == {
        "customerId=a": (7.0, [3.0, 4.0, 0.0, 0.0]),
        "customerId=b": (30.0, [10.0, 0.0, 20.0, 0.0]),
    }
    a = report["clientMeters"][0]
    assert a["values"][0] == {
        "secondsSinceEpochUtc": JAN1,
        "value": 3.0,
        "percentageFromPrevious": 0.0,
    }
    assert [v["percentageFromPrevious"] for v in a["values"]] == [0.0, 33.33, -100.0, 100.0]


def test_weekly_total_without_group_by(api: Api, meter: str) -> None:
    report = usage(
        api,
        meterApiName=meter,
        aggregation="sum",
        timeGroupingInterval="week",
        timeRange={"startTimeInSeconds": JAN1 + 3 * D, "endTimeInSeconds": JAN1 + 14 * D},
    )
    assert report["secondsSinceEpochIntervals"] == [JAN1, JAN1 + 7 * D]
    assert by_group(report) == {"*": (137.0, [37.0, 100.0])}
    assert report["clientMeters"][0]["group"] is None


def test_filter_by_dimension_group_by_region_and_count(api: Api, meter: str) -> None:
    report = usage(
        api,
        meterApiName=meter,
        aggregation="COUNT",
        timeGroupingInterval="DAY",
        groupBy=["region"],
        filter={"customerId": ["a", "b"]},
        timeRange={"startTimeInSeconds": JAN1, "endTimeInSeconds": JAN1 + 3 * D},
    )
    assert by_group(report) == {
        "region=eu": (3.0, [2.0, 0.0, 1.0]),
        "region=us": (2.0, [1.0, 1.0, 0.0]),
    }
    only_eu = usage(
        api,
        meterApiName=meter,
        aggregation="MAX",
        timeGroupingInterval="MONTH",
        filter={"region": ["eu"]},
        timeRange={"startTimeInSeconds": JAN1, "endTimeInSeconds": JAN1 + 31 * D},
    )
    assert by_group(only_eu) == {"*": (100.0, [100.0])}


def test_take_limits_and_orders_by_group_value(api: Api, meter: str) -> None:
    common: dict[str, Any] = {
        "meterApiName": meter,
        "aggregation": "SUM",
        "timeGroupingInterval": "WEEK",
        "groupBy": ["customerId"],
        "timeRange": {"startTimeInSeconds": JAN1, "endTimeInSeconds": JAN1 + 14 * D},
    }
    top = usage(api, **common, take={"limit": 2, "isAscending": False})
    assert [m["group"]["groupInfo"]["customerId"] for m in top["clientMeters"]] == ["c", "b"]
    bottom = usage(api, **common, take={"limit": 1, "isAscending": True})
    assert [m["groupValue"] for m in bottom["clientMeters"]] == [7.0]


def test_batch_and_trailing_slash(api: Api, meter: str) -> None:
    q = {
        "meterApiName": meter,
        "aggregation": "MIN",
        "timeGroupingInterval": "HOUR",
        "timeRange": {"startTimeInSeconds": JAN1, "endTimeInSeconds": JAN1 + 3 * H},
    }
    r = api.post("/usage/batch/", json=[q, {**q, "aggregation": "SUM"}])
    assert r.status_code == 200, r.text
    reports = r.json()
    assert [by_group(rep) for rep in reports] == [
        {"*": (1.0, [0.0, 1.0, 10.0])},
        {"*": (11.0, [0.0, 1.0, 10.0])},
    ]
    assert by_group(usage(api, "/usage/", **q)) == by_group(reports[0])


def test_usage_all_groups_every_meter_by_customer(api: Api, meter: str) -> None:
    r = api.get(
        "/usage/all",
        params={
            "startTimeInSeconds": JAN1,
            "endTimeInSeconds": JAN1 + 2 * D,
            "timeGroupingInterval": "DAY",
            "groupBy": "customerId",
            "customerId": "a",
        },
    )
    assert r.status_code == 200, r.text
    mine = [rep for rep in r.json() if rep["metadata"]["meterApiName"] == meter]
    assert len(mine) == 1
    assert by_group(mine[0]) == {"customerId=a": (7.0, [3.0, 4.0])}


@pytest.mark.parametrize(
    "bad",
    [
        {"aggregation": "AVG"},
        {"timeGroupingInterval": "YEAR"},
        {"timeRange": {"startTimeInSeconds": JAN1, "endTimeInSeconds": JAN1 - 1}},
        {"timeRange": None},
        {"timeGroupingInterval": "HOUR", "timeRange": {"startTimeInSeconds": 1}},
        {"take": {"limit": 0}},
        {"groupBy": "customerId"},
    ],
)
def test_bad_queries_are_400(api: Api, bad: dict[str, Any]) -> None:
    q: dict[str, Any] = {
        "meterApiName": "m",
        "aggregation": "SUM",
        "timeGroupingInterval": "DAY",
        "timeRange": {"startTimeInSeconds": JAN1, "endTimeInSeconds": JAN1 + D},
        **bad,
    }
    r = api.post("/usage", json={k: v for k, v in q.items() if v is not None})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "BAD_REQUEST"
