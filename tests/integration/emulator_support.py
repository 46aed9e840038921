"""Helpers for the emulator's integration tests: raw HTTP with the key, unique names."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import requests

from tests.conftest import Emulator

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z (a Monday), in ms


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Api:
    """requests against one emulator, with the API key on every call."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.s = requests.Session()
        self.s.headers["X-API-KEY"] = api_key

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.s.get(self.base_url + path, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.s.post(self.base_url + path, timeout=30, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.s.put(self.base_url + path, timeout=30, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.s.delete(self.base_url + path, timeout=30, **kw)

    def ingest(
        self, events: Any, *, gzipped: bool = False, path: str = "/ingest"
    ) -> requests.Response:
        body = orjson.dumps(events)
        headers = {"Content-Type": "application/json"}
        if gzipped:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return self.post(path, data=body, headers=headers)

    def records(self, customer_id: str) -> list[dict[str, Any]]:
        r = self.get("/_emulator/records", params={"customerId": customer_id, "limit": 10_000})
        assert r.status_code == 200, r.text
        rows: list[dict[str, Any]] = r.json()["records"]
        return rows

    def stats(self) -> dict[str, Any]:
        r = self.get("/_emulator/stats")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc


def events_for(
    customer: str, meter: str, values: Sequence[float], start_ms: int = T0, step_ms: int = 1000
) -> list[dict[str, Any]]:
    return [
        {
            "customerId": customer,
            "meterApiName": meter,
            "meterValue": v,
            "meterTimeInMillis": start_ms + i * step_ms,
            "uniqueId": f"{customer}-{i}",
        }
        for i, v in enumerate(values)
    ]


def session_api(emulator: Emulator) -> Iterator[Api]:
    """For an ``api`` fixture: the shared emulator, faults cleared afterwards."""
    client = Api(emulator.base_url, emulator.api_key)
    yield client
    client.delete("/_emulator/faults")
