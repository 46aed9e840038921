"""The pure part of reconcile: windows, the tally (dedupe, collisions, in flight, filtered),
the judgement of a cell, the usage reports folded into cells, and the report's lines; the
events of filtered records (the mappings compiled without their filters)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from connector.amberflo.models import UsageReport
from connector.reconcile.cells import compare, judge
from connector.reconcile.model import Pending, Tally, Window, iso, parse_when
from connector.reconcile.read import PartitionRead, RecordCounts
from connector.reconcile.report import Report, number
from connector.reconcile.usage import fold, queries
from connector.records import MeterEvent

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000


def ev(
    customer: str = "c",
    value: float = 1,
    t: int = T0,
    uid: str = "u",
    meter: str = "m",
    dims: dict[str, str] | None = None,
) -> MeterEvent:
    return MeterEvent(customer, meter, value, t, uid, dims)


def pending(*values: float, kind: str = "in flight") -> Pending:
    p = Pending()
    for v in values:
        p.add(v, kind)
    return p


class TestWindow:
    def test_both_ends_round_down_to_the_interval(self) -> None:
        w = Window.of("hour", T0 + 90_000, T0 + 3 * HOUR + 1)
        assert (w.start_ms, w.end_ms, w.buckets) == (T0, T0 + 3 * HOUR, 3)
        assert w.bucket(T0 + HOUR + 5) == (T0 + HOUR) // 1000
        day = Window.of("day", T0 + 5 * HOUR, T0 + 49 * HOUR)
        assert (day.start_ms, day.end_ms, day.buckets) == (T0, T0 + 48 * HOUR, 2)

    @pytest.mark.parametrize(("a", "b"), [(T0, T0), (T0 + 10, T0 + HOUR - 1), (T0 + HOUR, T0)])
    def test_an_empty_window_is_refused(self, a: int, b: int) -> None:
        with pytest.raises(ValueError, match="span no whole hour"):
            Window.of("hour", a, b)

    def test_times(self) -> None:
        now = T0 + 5 * HOUR + 123
        assert parse_when("now", now) == now
        assert parse_when("-2h", now) == now - 2 * HOUR
        assert parse_when("-90m", now) == now - 90 * 60_000
        assert parse_when("-1d", now) == now - 24 * HOUR
        assert parse_when("2026-01-01T01:00:00Z", now) == T0 + HOUR
        assert parse_when("2026-01-01", now) == T0
        assert parse_when(str(T0), now) == T0
        with pytest.raises(ValueError):
            parse_when("yesterday", now)
        assert iso(T0 + HOUR) == "2026-01-01T01:00:00Z"


class TestTally:
    def window(self) -> Window:
        return Window.of("hour", T0, T0 + 2 * HOUR)

    def test_sums_per_cell_and_leaves_out_what_is_outside(self) -> None:
        tally = Tally(self.window(), meters=frozenset({"m"}))
        tally.add([ev("a", 2, uid="1"), ev("a", 3, T0 + 10, "2"), ev("b", 1, uid="3")], "committed")
        tally.add([ev("a", 5, T0 + HOUR, "4"), ev("a", 1, T0 + 2 * HOUR, "5")], "committed")
        tally.add([ev("a", 1, T0 - 1, "6"), ev("a", 9, uid="7", meter="other")], "committed")
        s = T0 // 1000
        assert tally.committed == {
            ("m", "a", s): [5, 2],
            ("m", "b", s): [1, 1],
            ("m", "a", s + 3600): [5, 1],
        }
        assert (tally.events, tally.outside, tally.duplicates) == (4, 3, 0)

    def test_an_identical_event_counts_once_and_a_different_body_is_a_collision(self) -> None:
        tally = Tally(self.window())
        tally.add(
            [ev(uid="x", dims={"r": "1", "z": "2"}), ev(uid="x", dims={"z": "2", "r": "1"})],
            "committed",
        )
        tally.add([ev(uid="x", value=1.0, dims={"r": "1", "z": "2"})], "committed")  # 1 == 1.0
        assert tally.committed == {("m", "c", T0 // 1000): [1, 1]}
        assert tally.duplicates == 2 and not tally.collisions
        tally.add([ev(uid="x", value=2), ev(uid="x", value=2), ev(uid="x", value=3)], "committed")
        assert tally.committed == {("m", "c", T0 // 1000): [6, 3]}
        assert tally.collisions == {"x": 3} and tally.duplicates == 3

    def test_in_flight_and_dead_lettered_events_identical_to_committed_ones_add_nothing(
        self,
    ) -> None:
        tally = Tally(self.window())
        tally.add([ev(uid="a", value=4)], "in flight")  # seen before its committed twin
        tally.add([ev(uid="a", value=4), ev(uid="b", value=2)], "committed")
        tally.add([ev(uid="c", value=5), ev(uid="c", value=5)], "dead-lettered")
        tally.add([ev(uid="c", value=5), ev(uid="d", value=-1, t=T0 + HOUR)], "in flight")
        out = tally.pending()
        s = T0 // 1000
        assert set(out) == {("m", "c", s), ("m", "c", s + 3600)}
        first = out[("m", "c", s)]
        assert (first.pos, first.neg, first.count, first.kinds) == (5, 0, 1, {"dead-lettered"})
        second = out[("m", "c", s + 3600)]
        assert (second.pos, second.neg, second.count, second.kinds) == (0, -1, 1, {"in flight"})
        assert tally.events == 4 and tally.duplicates == 3

    def test_filtered_events_are_kept_apart_each_distinct_one_once(self) -> None:
        tally = Tally(self.window(), meters=frozenset({"m"}))
        tally.add([ev(uid="a", value=4), ev(uid="b", value=2)], "committed")
        tally.add([ev(uid="p", value=7)], "in flight")
        tally.add(
            [
                ev(uid="f", value=3),
                ev(uid="f", value=3),  # the same event twice: once
                ev(uid="a", value=4),  # identical to a committed event: Amberflo holds it
                ev(uid="p", value=7),  # identical to an in-flight event
                ev(uid="g", value=-1, t=T0 + HOUR),
                ev(uid="h", value=9, t=T0 - 1),  # outside the window: not kept, not "outside"
                ev(uid="i", value=9, meter="other"),
            ],
            "filtered",
        )
        assert tally.pending()[("m", "c", T0 // 1000)].count == 1
        out = tally.filtered()
        s = T0 // 1000
        assert set(out) == {("m", "c", s), ("m", "c", s + 3600)}
        first, second = out[("m", "c", s)], out[("m", "c", s + 3600)]
        assert (first.pos, first.neg, first.count, first.kinds) == (3, 0, 1, {"filtered"})
        assert (second.pos, second.neg, second.count) == (0, -1, 1)
        assert tally.filtered_events == 2
        assert (tally.events, tally.duplicates, tally.outside) == (3, 0, 0)
        assert tally.committed == {("m", "c", s): [6, 2]}  # filtered events are never expected


class TestJudge:
    def test_equal_is_a_match_within_the_tolerance_and_float_rounding(self) -> None:
        assert judge((10, 3), None, (10.0, 3)) == ("match", "")
        assert judge((0.1 + 0.2, 2), None, (0.3, 2)) == ("match", "")
        assert judge((10, 3), None, (10.4, 3), tolerance=0.5) == ("match", "")
        assert judge((10, 3), None, (10.6, 3), tolerance=0.5) == ("mismatch", "extra")
        assert judge((10, 3), pending(2, 3), (15, 5)) == ("match", "")

    def test_less_than_the_committed_part_is_missing_more_than_kafka_is_extra(self) -> None:
        assert judge((10, 3), None, (7, 2)) == ("mismatch", "missing")
        assert judge((10, 3), None, (0, 0)) == ("mismatch", "missing")
        assert judge((0, 0), None, (7, 1)) == ("mismatch", "extra")
        assert judge((10, 3), pending(2), (9, 3)) == ("mismatch", "missing")
        assert judge((10, 3), pending(2), (13, 4)) == ("mismatch", "extra")
        # same sum, other count: an event too many (of value 0) or too few
        assert judge((10, 3), None, (10, 4)) == ("mismatch", "extra")
        assert judge((10, 3), None, (10, 2)) == ("mismatch", "missing")

    def test_between_committed_and_everything_is_explained_by_what_is_pending(self) -> None:
        assert judge((10, 3), pending(2, 3), (10, 3)) == ("explained", "in flight")
        assert judge((10, 3), pending(2, 3), (12, 4)) == ("explained", "in flight")
        dead = pending(4, kind="dead-lettered")
        assert judge((0, 0), dead, (0, 0)) == ("explained", "dead-lettered")
        both = pending(2)
        both.add(-1, "dead-lettered")
        assert judge((10, 3), both, (9, 4)) == ("explained", "in flight, dead-lettered")
        assert judge((10, 3), both, (12, 4)) == ("explained", "in flight, dead-lettered")
        assert judge((10, 3), both, (8.5, 4)) == ("mismatch", "missing")

    def test_extra_that_filtered_events_account_for_is_caused_by_filtered(self) -> None:
        f = pending(3, 4, kind="filtered")
        assert judge((10, 3), None, (13, 4), filtered=f) == ("mismatch", "filtered")
        assert judge((10, 3), None, (17, 5), filtered=f) == ("mismatch", "filtered")
        assert judge((10, 3), pending(2), (15, 5), filtered=f) == ("mismatch", "filtered")
        # more than the filtered events can be, in SUM or in COUNT: extra
        assert judge((10, 3), None, (18, 5), filtered=f) == ("mismatch", "extra")
        assert judge((10, 3), None, (17, 6), filtered=f) == ("mismatch", "extra")
        # as many events as committed but a larger SUM: no filtered event fits
        assert judge((10, 3), None, (13, 3), filtered=f) == ("mismatch", "extra")
        # a filtered event that is negative lowers the SUM, with one event more
        neg = pending(-2, kind="filtered")
        assert judge((10, 3), None, (8, 4), filtered=neg) == ("mismatch", "filtered")
        # what is missing stays missing; a match or an explained cell is left alone
        assert judge((10, 3), None, (7, 2), filtered=f) == ("mismatch", "missing")
        assert judge((10, 3), None, (10, 3), filtered=f) == ("match", "")
        assert judge((10, 3), pending(2), (10, 3), filtered=f) == ("explained", "in flight")
        assert judge((10, 3), None, (13, 4), filtered=Pending()) == ("mismatch", "extra")
        assert judge((10, 3), None, (13.4, 4), 0.5, f) == ("mismatch", "filtered")

    def test_compare_covers_both_sides(self) -> None:
        s = T0 // 1000
        cells = compare(
            {("m", "a", s): [10, 2], ("m", "b", s): [1, 1]},
            {("m", "c", s): pending(3)},
            {("m", "a", s): [10, 2], ("m", "d", s): [4, 1]},
        )
        got = {(c.customer, c.status, c.cause, c.difference) for c in cells}
        assert got == {
            ("a", "match", "", 0),
            ("b", "mismatch", "missing", -1),
            ("c", "explained", "in flight", -3),
            ("d", "mismatch", "extra", 4),
        }

    def test_compare_names_filtered_cells_and_checks_no_cell_of_filtered_events_alone(
        self,
    ) -> None:
        s = T0 // 1000
        cells = compare(
            {("m", "a", s): [10, 2]},
            {},
            {("m", "a", s): [13, 3], ("m", "d", s): [4, 1]},
            filtered={
                ("m", "a", s): pending(3, 5, kind="filtered"),
                ("m", "d", s): pending(4, kind="filtered"),
                ("m", "e", s): pending(1, kind="filtered"),  # Amberflo holds nothing: fine
            },
        )
        got = {
            (c.customer, c.status, c.cause, c.kafka_sum, c.filtered_sum, c.filtered_count)
            for c in cells
        }
        assert got == {
            ("a", "mismatch", "filtered", 10, 8, 2),
            ("d", "mismatch", "filtered", 0, 4, 1),
        }


def test_usage_queries_and_reports_fold_into_cells() -> None:
    window = Window.of("hour", T0, T0 + 2 * HOUR)
    qs = queries(["b", "a"], window)
    assert [(q.meter_api_name, q.aggregation) for q in qs] == [
        ("a", "SUM"),
        ("a", "COUNT"),
        ("b", "SUM"),
        ("b", "COUNT"),
    ]
    assert qs[0].wire() == {
        "meterApiName": "a",
        "aggregation": "SUM",
        "timeGroupingInterval": "HOUR",
        "timeRange": {"startTimeInSeconds": T0 // 1000, "endTimeInSeconds": T0 // 1000 + 7200},
        "groupBy": ["customerId"],
    }
    s = T0 // 1000

    def report(values: list[float]) -> UsageReport:
        series = [{"secondsSinceEpochUtc": s + 3600 * i, "value": v} for i, v in enumerate(values)]
        return UsageReport.model_validate(
            {"clientMeters": [{"group": {"groupInfo": {"customerId": "x"}}, "values": series}]}
        )

    cells: dict[tuple[str, str, int], list[float]] = {}
    fold(cells, qs[0], report([0.0, 7.5]))
    fold(cells, qs[1], report([0.0, 3.0]))
    fold(cells, qs[2], UsageReport())
    assert cells == {("a", "x", s + 3600): [7.5, 3.0]}


def test_retention_cut_needs_a_moved_log_start_and_a_late_first_record() -> None:
    p = PartitionRead("t", 0, committed=10, start=-2, how="beginning", low=100)
    p.first_offset, p.first_ts = 100, T0 + HOUR
    assert p.retention_cut(T0)
    assert not p.retention_cut(T0 + HOUR)  # the first record left is early enough
    p.low = 0
    assert not p.retention_cut(T0)  # nothing was ever removed
    p.low, p.first_offset = 100, 150  # read began after the log start (timestamp lookup)
    assert not p.retention_cut(T0)


def test_report_lines_and_exit_code() -> None:
    window = Window.of("hour", T0, T0 + HOUR)
    s = T0 // 1000
    tally = Tally(window)
    tally.add([ev("a", 5, uid="1"), ev("b", 2.5, uid="2")], "committed")
    tally.add([ev("c", 1, uid="3")], "in flight")
    pend = tally.pending()
    amberflo = {("m", "a", s): [5.0, 1.0], ("m", "b", s): [2.0, 1.0]}
    counts = RecordCounts(read=3)
    part = PartitionRead("t", 0, committed=2, start=-2, how="beginning", low=0)
    part.in_flight = 1
    report = Report(
        window, 0.0, 3600, ["t"], compare(tally.committed, pend, amberflo), [part], counts, tally
    )
    lines = list(report.lines())
    assert lines[0].split() == [
        "meter",
        "customer",
        "bucket",
        "expected",
        "in",
        "Amberflo",
        "difference",
        "events",
        "cause",
    ]
    assert lines[1].split() == [
        "m",
        "b",
        "2026-01-01T00:00:00Z",
        "2.5",
        "2",
        "-0.5",
        "1/1",
        "missing",
    ]
    assert lines[2].split() == [
        "m",
        "c",
        "2026-01-01T00:00:00Z",
        "1",
        "0",
        "-1",
        "1/0",
        "in",
        "flight",
    ]
    assert lines[3] == "note: t read from the beginning (the broker ignores timestamp lookups)"
    assert lines[-1] == (
        "reconcile MISMATCH: 3 cells checked, 1 matching, 1 explained (in flight), 1 mismatched; "
        "3 events checked from 3 records (1 in flight, 0 dead-lettered, 0 filtered, "
        "0 unaccounted); covered 2026-01-01T00:00:00Z to 2026-01-01T01:00:00Z by hour"
    )
    assert report.exit_code == 1
    doc = report.to_json()
    assert doc["summary"]["cells_mismatched"] == 1 and len(doc["cells"]) == 2
    counts.unaccounted = 1  # a committed record neither delivered nor dead-lettered fails too
    amberflo[("m", "b", s)] = [2.5, 1.0]
    ok = Report(
        window, 0.0, 3600, ["t"], compare(tally.committed, pend, amberflo), [part], counts, tally
    )
    assert not ok.mismatched and ok.exit_code == 1
    assert [number(v) for v in (120, 120.0, -0.5, 1e-7)] == ["120", "120", "-0.5", "1e-07"]


def test_a_filtered_cell_in_the_text_and_the_json() -> None:
    window = Window.of("hour", T0, T0 + HOUR)
    s = T0 // 1000
    tally = Tally(window)
    tally.add([ev("a", 5, uid="1")], "committed")
    tally.add([ev("a", 2, uid="2")], "filtered")
    pend, filtered = tally.pending(), tally.filtered()
    amberflo = {("m", "a", s): [7.0, 2.0]}
    cells = compare(tally.committed, pend, amberflo, filtered=filtered)
    part = PartitionRead("t", 0, committed=2, start=5, how="timestamp", low=0)
    report = Report(
        window, 0.0, 3600, ["t"], cells, [part], RecordCounts(read=2, filtered=1), tally
    )
    lines = list(report.lines())
    assert lines[1].split() == ["m", "a", "2026-01-01T00:00:00Z", "5", "7", "+2", "1/2", "filtered"]
    assert lines[-1].startswith("reconcile MISMATCH: 1 cells checked, 0 matching, 0 explained,")
    assert (
        "1 mismatched; 1 events checked from 2 records (0 in flight, 0 dead-lettered, 1 filtered"
        in lines[-1]
    )
    assert report.exit_code == 1
    doc = report.to_json()
    (cell,) = doc["cells"]
    assert (cell["status"], cell["cause"]) == ("mismatch", "filtered")
    assert cell["filtered"] == {"sum": 2, "count": 1}
    assert cell["expected"] == {"sum": 5, "count": 1}
    assert doc["summary"]["events_filtered"] == 1 and doc["summary"]["records_filtered"] == 1


def test_the_honest_limits_are_reported_retention_cut_and_colliding_ids() -> None:
    window = Window.of("hour", T0, T0 + HOUR)
    tally = Tally(window)
    tally.add([ev(uid="x", value=1), ev(uid="x", value=2)], "committed")
    tally.pending()
    cut = PartitionRead("t", 1, committed=200, start=-2, how="beginning", low=120)
    cut.first_offset, cut.first_ts = 120, T0 + 600_000
    whole = PartitionRead("t", 0, committed=5, start=-2, how="beginning", low=0)
    whole.first_offset, whole.first_ts = 0, T0 - HOUR
    cells = compare(tally.committed, {}, {("m", "c", T0 // 1000): [3.0, 2.0]})
    report = Report(window, 0.0, 3600, ["t"], cells, [whole, cut], RecordCounts(read=2), tally)
    notes = list(report.warnings())
    assert (
        "note: t[1] starts at offset 120 (2026-01-01T00:10:00Z): earlier records are gone "
        "(retention), usage before then cannot be checked"
    ) in notes
    assert not any("t[0]" in n for n in notes)
    assert (
        "note: 1 uniqueId(s) are carried by events that differ (records reusing one id): x; "
        "Amberflo counts each distinct event"
    ) in notes
    doc = report.to_json()
    assert doc["retention_cut"] == ["t[1]"] and doc["collisions"] == {"x": 2}
    assert doc["partitions"][1]["first_offset"] == 120 and doc["partitions"][1]["log_start"] == 120
    assert report.ok  # limits are notes, not failures


def test_a_filtered_record_has_the_events_it_would_have_become_without_the_filters() -> None:
    from connector.formats import Mappers
    from connector.formats.rules import Filtered
    from connector.reconcile.filtered import Unfiltered
    from connector.records import SourceRecord
    from connector.settings import Settings

    region = {"dimension": "region", "values": ["test"], "action": "EXCLUDE"}
    rules = {
        "topics": ["rules"],
        "format": "json",
        "meter": "calls",
        "customer_id": {"path": "account"},
        "value": {"path": "units"},
        "dimensions": {"region": {"path": "region"}},
        "filters": [region],
    }
    native = {"topics": ["native"], "format": "native", "filters": [region]}
    settings = Settings(
        kafka={"topics": ["rules", "native"]}, amberflo={"api_key": "k"}, mappings=[rules, native]
    )
    unfiltered = Unfiltered(settings)
    mappers = Mappers(settings)
    body = {"account": "acme", "units": 3, "region": "test"}
    record = SourceRecord("rules", 1, 7, T0, None, orjson.dumps(body))
    assert isinstance(mappers.for_topic("rules").evaluate(record), Filtered)  # type: ignore[attr-defined]
    (event,) = (e.payload() for e in unfiltered(record))
    assert event == {
        "customerId": "acme",
        "meterApiName": "calls",
        "meterValue": 3,
        "meterTimeInMillis": T0,
        "uniqueId": mappers.ids.of(record, "calls"),  # the id `run` would derive
        "dimensions": {"region": "test"},
    }
    native_body = {
        "customerId": "globex",
        "meterApiName": "api",
        "meterValue": 2,
        "meterTimeInMillis": T0 + 5,
        "dimensions": {"region": "test"},
    }
    nrec = SourceRecord("native", 0, 3, T0, None, orjson.dumps(native_body))
    assert isinstance(mappers.for_topic("native").evaluate(nrec), Filtered)  # type: ignore[attr-defined]
    (nevent,) = (e.payload() for e in unfiltered(nrec))
    assert (nevent["customerId"], nevent["meterValue"]) == ("globex", 2)
    broken = SourceRecord("rules", 0, 1, T0, None, orjson.dumps({"region": "test"}))
    assert unfiltered(broken) == []  # filtered whatever else is wrong with it: no cell


def test_topics_are_the_configured_ones_or_the_requested_ones_patterns_resolved_like_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connector.reconcile.read import resolve_topics
    from connector.settings import load_settings

    monkeypatch.setenv("CONNECTOR_KAFKA__TOPICS", "a,^u.*")
    monkeypatch.setenv("CONNECTOR_AMBERFLO__API_KEY", "k")
    settings = load_settings()

    class Cluster:
        def list_topics(self, timeout: float) -> object:
            return type("Meta", (), {"topics": {"usage": 0, "usage.dlq": 0, "__x": 0, "o": 0}})

    cluster: Any = Cluster()
    assert resolve_topics(cluster, settings, []) == ["a", "usage"]
    assert resolve_topics(cluster, settings, ["^o", "b"]) == ["b", "o"]
