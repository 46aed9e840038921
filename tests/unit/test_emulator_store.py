"""The emulator's SQLite store: dedupe by key, chunked inserts, time-window scans, reopen."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from connector.emulator.documents import ConflictError
from connector.emulator.ingest import prepare
from connector.emulator.store import Store

T = 1_700_000_000_000


def events(
    n: int, customer: str = "c", meter: str = "m", start: int = T
) -> list[dict[str, object]]:
    return [
        {
            "customerId": customer,
            "meterApiName": meter,
            "meterValue": i,
            "meterTimeInMillis": start + i,
            "uniqueId": f"{customer}-{i}",
            "dimensions": {"k": str(i % 3)},
        }
        for i in range(n)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "e.db"))


def test_try_insert_writes_only_when_the_store_is_free(store: Store) -> None:
    rows = prepare(events(5), {}).rows
    held = threading.Event()
    release = threading.Event()

    def long_query() -> None:  # holds the store's lock the way a slow usage query does
        with store._lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=long_query)
    t.start()
    held.wait(10)
    try:
        assert store.try_insert_records(rows) is None
        assert store.records_stored == 0
    finally:
        release.set()
        t.join()
    assert store.try_insert_records(rows) == 5
    assert store.try_insert_records(rows) == 0  # duplicates, as with insert_records
    assert store.records_stored == 5 and len(store.records_page(0, 10)) == 5


def test_insert_counts_only_new_rows_across_chunks(store: Store) -> None:
    rows = prepare(events(2500), {}).rows  # three multi-row statements
    before = time.time() * 1000
    assert store.insert_records(rows) == 2500
    assert store.insert_records(rows[:10] + prepare(events(1, customer="d"), {}).rows) == 1
    assert store.insert_records(rows + rows) == 0
    assert store.records_stored == 2501
    page = store.records_page(0, 3000)
    assert len(page) == 2501 and [r[0] for r in page] == sorted(r[0] for r in page)
    stamps = {r[7] for r in page[:2500]}
    assert len(stamps) == 1 and before - 1 <= stamps.pop() <= time.time() * 1000 + 1


def test_duplicates_within_one_batch_are_stored_once(store: Store) -> None:
    rows = prepare(events(3) * 2, {}).rows
    assert len(rows) == 6
    assert store.insert_records(rows) == 3


def test_usage_rows_scan_the_time_window(store: Store) -> None:
    store.insert_records(prepare(events(10) + events(5, meter="other"), {}).rows)
    rows = store.usage_rows("m", T + 2, T + 5)
    assert [(r[0], r[2], r[3]) for r in rows] == [("m", T + i, float(i)) for i in (2, 3, 4)]
    assert len(store.usage_rows(None, T, T + 100)) == 15
    assert store.usage_rows("m", 0, T) == []


def test_records_page_filters_and_totals(store: Store) -> None:
    store.insert_records(prepare(events(4, customer="a") + events(2, customer="b"), {}).rows)
    page = store.records_page(0, 10, customer_id="b")
    assert [(r[1], r[3]) for r in page] == [("b", 0.0), ("b", 1.0)]
    assert store.records_page(page[-1][0], 10, customer_id="b") == []
    assert store.totals() == [("m", "a", 6.0, 4), ("m", "b", 1.0, 2)]
    assert store.totals(customer_id="a", meter_api_name="m") == [("m", "a", 6.0, 4)]


def test_delete_records_by_filters_frees_their_dedupe_keys(store: Store) -> None:
    rows = prepare(events(6, customer="a") + events(3, customer="b"), {}).rows
    store.insert_records(rows)
    assert store.delete_records(customer_id="a", start_ms=T + 1, end_ms=T + 4) == 3
    assert [r[4] - T for r in store.records_page(0, 10, customer_id="a")] == [0, 4, 5]
    assert store.delete_records(customer_id="a", meter_api_name="other") == 0
    assert store.delete_records(unique_id="b-2") == 1
    assert store.records_stored == 5 and store.totals(customer_id="b") == [("m", "b", 1.0, 2)]
    assert store.insert_records(rows) == 4  # the deleted ones are new again
    assert store.delete_records() == 9 and store.records_stored == 0


def test_everything_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "e.db")
    store = Store(path)
    rows = prepare(events(5), {}).rows
    store.insert_records(rows)
    store.insert_customer({"customerId": "c", "customerName": "C"})
    store.insert_meter({"id": "1", "meterApiName": "m"})
    store.add_pricing({"customerId": "c", "productPlanId": "p"})
    store.put_rule({"ruleId": "r", "meterApiName": "m", "dimensionName": "k"})
    store.close()

    again = Store(path)
    assert again.records_stored == 5
    assert again.insert_records(rows) == 0
    assert again.get_customer("c") == {"customerId": "c", "customerName": "C"}
    assert again.get_meter("m") == again.get_meter("1") == {"id": "1", "meterApiName": "m"}
    assert again.pricing_history("c") == [{"customerId": "c", "productPlanId": "p"}]
    assert [r["ruleId"] for r in again.list_rules("m")] == ["r"]


def test_conflicts(store: Store) -> None:
    store.insert_customer({"customerId": "c", "customerName": "C"})
    with pytest.raises(ConflictError):
        store.insert_customer({"customerId": "c", "customerName": "D"})
    store.insert_meter({"id": "1", "meterApiName": "m"})
    store.insert_meter({"id": "2", "meterApiName": "n"})
    with pytest.raises(ConflictError):
        store.insert_meter({"id": "3", "meterApiName": "m"})
    with pytest.raises(ConflictError):
        store.update_meter({"id": "2", "meterApiName": "m"})
    assert store.update_meter({"id": "9", "meterApiName": "z"}) is False


def test_memory_database() -> None:
    store = Store(":memory:")
    assert store.insert_records(prepare(events(3), {}).rows) == 3
    assert store.records_stored == 3
