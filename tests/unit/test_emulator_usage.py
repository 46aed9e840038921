"""The emulator's usage engine against hand-computed reports."""

from __future__ import annotations

import calendar
from typing import Any

import orjson
import pytest

from connector.emulator.usage import (
    UsageQueryError,
    UsageRow,
    bucket_starts,
    compute_report,
    floor_time,
    parse_query,
    percentage,
)

JAN1 = 1_704_067_200  # 2024-01-01T00:00:00Z, a Monday
HOUR = 3600
DAY = 86_400


def ts(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, s))


def row(customer: str, seconds: float, value: float, **dims: str) -> UsageRow:
    dims_json = orjson.dumps(dims, option=orjson.OPT_SORT_KEYS).decode() if dims else None
    return (customer, int(seconds * 1000), value, dims_json)


def query(**overrides: Any) -> dict[str, Any]:
    q: dict[str, Any] = {
        "meterApiName": "calls",
        "aggregation": "SUM",
        "timeGroupingInterval": "DAY",
        "timeRange": {"startTimeInSeconds": JAN1 + 5 * HOUR, "endTimeInSeconds": JAN1 + 3 * DAY},
    }
    q.update(overrides)
    return q


def series(report: dict[str, Any]) -> dict[tuple[tuple[str, str], ...] | None, list[float]]:
    out: dict[tuple[tuple[str, str], ...] | None, list[float]] = {}
    for m in report["clientMeters"]:
        key = None if m["group"] is None else tuple(sorted(m["group"]["groupInfo"].items()))
        out[key] = [v["value"] for v in m["values"]]
    return out


# Jan 1 03:00 is before the start (05:00) but inside the widened first bucket.
ROWS = [
    row("c1", JAN1 + 3 * HOUR, 1, region="eu"),
    row("c1", JAN1 + 10 * HOUR, 2, region="us"),
    row("c1", JAN1 + DAY + HOUR, 3, region="eu"),
    row("c2", JAN1 + 2 * DAY - 0.001, 6, region="us"),
    row("c2", JAN1 + 3 * DAY, 100, region="us"),  # at the (exclusive) end: ignored
    row("c3", JAN1 - 1, 1000),  # before the first bucket: ignored
]


class TestFloors:
    def test_hour_day(self) -> None:
        t = ts(2024, 3, 5, 13, 47, 12)
        assert floor_time("HOUR", t) == ts(2024, 3, 5, 13)
        assert floor_time("DAY", t) == ts(2024, 3, 5)

    @pytest.mark.parametrize(
        ("when", "monday"),
        [
            (ts(2024, 1, 3, 12), ts(2024, 1, 1)),  # Wednesday
            (ts(2024, 1, 7, 23, 59, 59), ts(2024, 1, 1)),  # Sunday: still the same week
            (ts(2024, 1, 8), ts(2024, 1, 8)),  # Monday 00:00 starts a new week
            (0, ts(1969, 12, 29)),  # 1970-01-01 was a Thursday
        ],
    )
    def test_week_starts_monday_utc(self, when: int, monday: int) -> None:
        assert floor_time("WEEK", when) == monday

    def test_month(self) -> None:
        assert floor_time("MONTH", ts(2024, 2, 29, 23)) == ts(2024, 2, 1)
        assert bucket_starts("MONTH", ts(2023, 11, 15), ts(2024, 2, 2)) == [
            ts(2023, 11, 1),
            ts(2023, 12, 1),
            ts(2024, 1, 1),
            ts(2024, 2, 1),
        ]

    def test_buckets_start_at_the_floor_and_stop_before_the_end(self) -> None:
        assert bucket_starts("DAY", JAN1 + 5 * HOUR, JAN1 + 3 * DAY) == [
            JAN1,
            JAN1 + DAY,
            JAN1 + 2 * DAY,
        ]
        assert bucket_starts("DAY", JAN1 + 5 * HOUR, JAN1 + 3 * DAY + 1)[-1] == JAN1 + 3 * DAY
        assert bucket_starts("WEEK", ts(2024, 1, 3), ts(2024, 1, 16)) == [
            ts(2024, 1, 1),
            ts(2024, 1, 8),
            ts(2024, 1, 15),
        ]


class TestReports:
    def test_sum_by_customer_with_gaps_filled(self) -> None:
        report = compute_report(parse_query(query(groupBy=["customerId"])), ROWS)
        assert report["secondsSinceEpochIntervals"] == [JAN1, JAN1 + DAY, JAN1 + 2 * DAY]
        assert series(report) == {
            (("customerId", "c1"),): [3.0, 3.0, 0.0],
            (("customerId", "c2"),): [0.0, 6.0, 0.0],
        }
        c1, c2 = report["clientMeters"]
        assert c1["groupValue"] == 6.0 and c2["groupValue"] == 6.0
        assert [v["percentageFromPrevious"] for v in c1["values"]] == [0.0, 0.0, -100.0]
        assert [v["percentageFromPrevious"] for v in c2["values"]] == [0.0, 100.0, -100.0]
        assert [v["secondsSinceEpochUtc"] for v in c1["values"]] == [
            JAN1,
            JAN1 + DAY,
            JAN1 + 2 * DAY,
        ]

    def test_without_group_by_one_series_with_null_group(self) -> None:
        report = compute_report(parse_query(query()), ROWS)
        assert len(report["clientMeters"]) == 1
        only = report["clientMeters"][0]
        assert only["group"] is None
        assert [v["value"] for v in only["values"]] == [3.0, 9.0, 0.0]
        assert only["groupValue"] == 12.0
        assert [v["percentageFromPrevious"] for v in only["values"]] == [0.0, 200.0, -100.0]

    def test_without_group_by_and_no_data_still_one_zero_series(self) -> None:
        report = compute_report(parse_query(query()), [])
        assert series(report) == {None: [0.0, 0.0, 0.0]}

    def test_group_by_dimension_and_customer(self) -> None:
        report = compute_report(parse_query(query(groupBy=["region"])), ROWS)
        assert series(report) == {
            (("region", "eu"),): [1.0, 3.0, 0.0],
            (("region", "us"),): [2.0, 6.0, 0.0],
        }
        both = compute_report(parse_query(query(groupBy=["customerId", "region"])), ROWS)
        assert series(both)[(("customerId", "c1"), ("region", "eu"))] == [1.0, 3.0, 0.0]
        assert len(both["clientMeters"]) == 3

    def test_record_without_the_grouped_dimension_has_no_such_key(self) -> None:
        rows = [row("c1", JAN1, 1), row("c1", JAN1, 2, region="eu")]
        report = compute_report(parse_query(query(groupBy=["region"])), rows)
        assert series(report) == {(): [1.0, 0.0, 0.0], (("region", "eu"),): [2.0, 0.0, 0.0]}

    def test_filter_by_customer_and_dimension(self) -> None:
        by_customer = compute_report(parse_query(query(filter={"customerId": ["c2"]})), ROWS)
        assert series(by_customer) == {None: [0.0, 6.0, 0.0]}
        by_region = compute_report(
            parse_query(query(filter={"region": ["eu"]}, groupBy=["customerId"])), ROWS
        )
        assert series(by_region) == {(("customerId", "c1"),): [1.0, 3.0, 0.0]}
        seed_style = compute_report(parse_query(query(customerFilter=["c1"])), ROWS)
        assert series(seed_style) == {None: [3.0, 3.0, 0.0]}

    def test_take_orders_by_group_value(self) -> None:
        rows = [row("a", JAN1, 5), row("b", JAN1, 1), row("c", JAN1 + DAY, 9)]
        desc = compute_report(
            parse_query(query(groupBy=["customerId"], take={"limit": 2, "isAscending": False})),
            rows,
        )
        assert [m["group"]["groupInfo"]["customerId"] for m in desc["clientMeters"]] == ["c", "a"]
        asc = compute_report(
            parse_query(query(groupBy=["customerId"], take={"limit": 1, "isAscending": True})),
            rows,
        )
        assert [m["group"]["groupInfo"]["customerId"] for m in asc["clientMeters"]] == ["b"]
        assert desc["metadata"]["take"] == {"limit": 2, "isAscending": False}

    @pytest.mark.parametrize(
        ("aggregation", "buckets", "total"),
        [
            ("SUM", [3.0, 9.0, 0.0], 12.0),
            ("COUNT", [2.0, 2.0, 0.0], 4.0),
            ("MIN", [1.0, 3.0, 0.0], 1.0),
            ("MAX", [2.0, 6.0, 0.0], 6.0),
        ],
    )
    def test_aggregations(self, aggregation: str, buckets: list[float], total: float) -> None:
        report = compute_report(parse_query(query(aggregation=aggregation.lower())), ROWS)
        assert series(report) == {None: buckets}
        assert report["clientMeters"][0]["groupValue"] == total
        assert report["metadata"]["aggregation"] == aggregation

    def test_min_max_of_negative_values(self) -> None:
        rows = [row("a", JAN1, -5), row("a", JAN1 + 1, -2)]
        assert series(compute_report(parse_query(query(aggregation="MAX")), rows)) == {
            None: [-2.0, 0.0, 0.0]
        }
        assert series(compute_report(parse_query(query(aggregation="MIN")), rows)) == {
            None: [-5.0, 0.0, 0.0]
        }

    def test_hour_buckets(self) -> None:
        q = query(
            timeGroupingInterval="hour",
            timeRange={"startTimeInSeconds": JAN1 + 30 * 60, "endTimeInSeconds": JAN1 + 3 * HOUR},
        )
        rows = [row("a", JAN1 + 10, 1), row("a", JAN1 + 2 * HOUR + 59 * 60, 4)]
        report = compute_report(parse_query(q), rows)
        assert report["secondsSinceEpochIntervals"] == [JAN1, JAN1 + HOUR, JAN1 + 2 * HOUR]
        assert series(report) == {None: [1.0, 0.0, 4.0]}
        assert report["metadata"]["timeGroupingInterval"] == "HOUR"

    def test_metadata_echoes_the_query(self) -> None:
        q = query(groupBy=["customerId"], filter={"customerId": ["b", "a"]})
        meta = compute_report(parse_query(q), [])["metadata"]
        assert meta == {
            "meterApiName": "calls",
            "aggregation": "SUM",
            "timeGroupingInterval": "DAY",
            "timeRange": {
                "startTimeInSeconds": JAN1 + 5 * HOUR,
                "endTimeInSeconds": JAN1 + 3 * DAY,
            },
            "filter": {"customerId": ["a", "b"]},
            "groupBy": ["customerId"],
        }


class TestPercentage:
    @pytest.mark.parametrize(
        ("prev", "cur", "expected"),
        [
            (0, 0, 100.0),  # the live rule: 100 whenever prev is 0
            (0, 5, 100.0),
            (4040, 19605, 385.27),  # the docs' example
            (4, 2, -50.0),
            (3, 3, 0.0),
        ],
    )
    def test_rule(self, prev: float, cur: float, expected: float) -> None:
        assert percentage(prev, cur) == expected


class TestQueryValidation:
    def test_missing_end_means_now(self) -> None:
        q = parse_query(query(timeRange={"startTimeInSeconds": JAN1}), now_s=JAN1 + 10)
        assert q.end_s == JAN1 + 10

    def test_seed_style_top_level_times(self) -> None:
        q = parse_query(
            {
                "meterApiName": "m",
                "aggregation": "SUM",
                "timeGroupingInterval": "DAY",
                "startTimeInSeconds": JAN1,
                "endTimeInSeconds": JAN1 + DAY,
            }
        )
        assert (q.start_s, q.end_s) == (JAN1, JAN1 + DAY)

    @pytest.mark.parametrize(
        "bad",
        [
            {"aggregation": "AVG"},
            {"timeGroupingInterval": "YEAR"},
            {"meterApiName": ""},
            {"timeRange": {"startTimeInSeconds": JAN1, "endTimeInSeconds": JAN1}},
            {"timeRange": {"endTimeInSeconds": JAN1}},
            {"timeRange": {"startTimeInSeconds": 0}},
            {"timeRange": {"startTimeInSeconds": 1}, "timeGroupingInterval": "HOUR"},
            {"take": {"limit": 0}},
        ],
    )
    def test_rejected(self, bad: dict[str, Any]) -> None:
        with pytest.raises(UsageQueryError):
            parse_query(query(**bad), now_s=JAN1 + 10 * DAY)
