"""The emulator's JSON documents: customers, their plan assignments, meters and filtering
rules, each stored whole as JSON keyed by its identifiers (``Store`` adds the meter records).

Every method is atomic: it runs under the store's lock and commits before it returns.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

import orjson

JSON = dict[str, Any]


class ConflictError(Exception):
    """A write would violate a uniqueness rule (e.g. a second meter with the same name)."""


def _dump(doc: JSON) -> str:
    return orjson.dumps(doc).decode()


def _load(text: str) -> JSON:
    doc: JSON = orjson.loads(text)
    return doc


class Documents:
    """The document tables of the database that ``Store`` opens (the schema is ``Store``'s)."""

    _db: sqlite3.Connection
    _lock: threading.Lock

    def _one(self, sql: str, args: Iterable[Any]) -> JSON | None:
        with self._lock:
            row = self._db.execute(sql, tuple(args)).fetchone()
        return None if row is None else _load(row[0])

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[JSON]:
        with self._lock:
            rows = self._db.execute(sql, tuple(args)).fetchall()
        return [_load(r[0]) for r in rows]

    def _write(self, sql: str, args: Iterable[Any]) -> int:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(args)).rowcount
            except sqlite3.IntegrityError as exc:
                raise ConflictError(str(exc)) from exc

    # customers

    def get_customer(self, customer_id: str) -> JSON | None:
        return self._one("SELECT body FROM customers WHERE customer_id = ?", [customer_id])

    def list_customers(self) -> list[JSON]:
        return self._all("SELECT body FROM customers ORDER BY seq")

    def insert_customer(self, doc: JSON) -> None:
        """Raises ConflictError when the customerId exists."""
        self._write(
            "INSERT INTO customers (customer_id, body) VALUES (?, ?)",
            [doc["customerId"], _dump(doc)],
        )

    def replace_customer(self, doc: JSON) -> None:
        self._write(
            "INSERT INTO customers (customer_id, body) VALUES (?, ?)"
            " ON CONFLICT(customer_id) DO UPDATE SET body = excluded.body",
            [doc["customerId"], _dump(doc)],
        )

    def delete_customer(self, customer_id: str) -> bool:
        return self._write("DELETE FROM customers WHERE customer_id = ?", [customer_id]) > 0

    # customer pricing (product plans)

    def add_pricing(self, doc: JSON) -> None:
        self._write(
            "INSERT INTO customer_pricing (customer_id, body) VALUES (?, ?)",
            [doc["customerId"], _dump(doc)],
        )

    def pricing_history(self, customer_id: str) -> list[JSON]:
        """Every plan assignment of the customer, oldest first."""
        return self._all(
            "SELECT body FROM customer_pricing WHERE customer_id = ? ORDER BY seq", [customer_id]
        )

    # meters

    def get_meter(self, key: str) -> JSON | None:
        """The meter whose id is ``key``, else the one whose meterApiName is ``key``."""
        return self._one("SELECT body FROM meters WHERE id = ?", [key]) or self._one(
            "SELECT body FROM meters WHERE meter_api_name = ?", [key]
        )

    def get_meter_by_name(self, meter_api_name: str) -> JSON | None:
        return self._one("SELECT body FROM meters WHERE meter_api_name = ?", [meter_api_name])

    def list_meters(self) -> list[JSON]:
        return self._all("SELECT body FROM meters ORDER BY seq")

    def insert_meter(self, doc: JSON) -> None:
        """Raises ConflictError when the id or the meterApiName exists."""
        self._write(
            "INSERT INTO meters (id, meter_api_name, body) VALUES (?, ?, ?)",
            [doc["id"], doc["meterApiName"], _dump(doc)],
        )

    def update_meter(self, doc: JSON) -> bool:
        """Replace the meter with id ``doc["id"]``; False when absent, ConflictError on a
        meterApiName clash with another meter."""
        return (
            self._write(
                "UPDATE meters SET meter_api_name = ?, body = ? WHERE id = ?",
                [doc["meterApiName"], _dump(doc), doc["id"]],
            )
            > 0
        )

    def delete_meter(self, meter_id: str) -> bool:
        return self._write("DELETE FROM meters WHERE id = ?", [meter_id]) > 0

    # filtering rules

    def list_rules(self, meter_api_name: str | None = None) -> list[JSON]:
        if meter_api_name is None:
            return self._all("SELECT body FROM filtering_rules ORDER BY seq")
        return self._all(
            "SELECT body FROM filtering_rules WHERE meter_api_name = ? ORDER BY seq",
            [meter_api_name],
        )

    def put_rule(self, doc: JSON) -> None:
        self._write(
            "INSERT INTO filtering_rules (rule_id, meter_api_name, body) VALUES (?, ?, ?)"
            " ON CONFLICT(rule_id) DO UPDATE SET meter_api_name = excluded.meter_api_name,"
            " body = excluded.body",
            [doc["ruleId"], doc["meterApiName"], _dump(doc)],
        )

    def delete_rule(self, rule_id: str) -> bool:
        return self._write("DELETE FROM filtering_rules WHERE rule_id = ?", [rule_id]) > 0
