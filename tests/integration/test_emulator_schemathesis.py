"""Property test: no input generated from the emulator's own /openapi.json gets a 5xx.

Every documented operation gets schema-conforming (positive) and schema-violating
(negative) inputs.  Runs against a private emulator (its own SQLite file), so generated
customers, meters and filtering rules never leak into the shared session emulator.  The
``/_emulator`` controls are excluded: a generated fault spec would (correctly) make later
requests fail with 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from connector.embedded import EmbeddedEmulator

API_KEY = "schemathesis-key"
EXAMPLES_PER_OPERATION_AND_MODE = 10


@pytest.fixture(scope="module")
def private_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedEmulator]:
    d: Path = tmp_path_factory.mktemp("emulator-schemathesis")
    with EmbeddedEmulator(db=d / "emulator.db", api_key=API_KEY, log_path=d / "log") as emu:
        yield emu


def _openapi(emu: EmbeddedEmulator) -> dict[str, Any]:
    response = requests.get(
        f"{emu.base_url}/openapi.json", headers={"X-API-KEY": API_KEY}, timeout=10
    )
    response.raise_for_status()
    doc: dict[str, Any] = response.json()
    return doc


def _fuzz(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    failures: list[str],
) -> None:
    """Send generated ``mode`` inputs for ``operation``; record every 5xx in ``failures``."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION_AND_MODE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(
            base_url=base_url, session=session, headers={"X-API-KEY": API_KEY}, timeout=30
        )
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} ({mode}) -> "
                f"{response.status_code}: {response.text[:300]} "
                f"[body={getattr(case, 'body', None)!r:.300}, query={case.query!r}]"
            )

    try:
        check()
    except Unsatisfiable:
        # Nothing to violate (e.g. no parameters and no body): no negative cases.
        assert mode is GenerationMode.NEGATIVE, operation.label


def test_no_server_error_for_any_generated_input(private_emulator: EmbeddedEmulator) -> None:
    schema = schemathesis.openapi.from_dict(_openapi(private_emulator)).exclude(
        path_regex="^/_emulator"
    )
    session = requests.Session()
    session.headers["X-API-KEY"] = API_KEY
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        tested += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, private_emulator.base_url, session, failures)
    assert tested >= 25, f"only {tested} operations found in /openapi.json"
    assert not failures, "\n".join(failures[:20])
    assert private_emulator.proc.poll() is None, "the emulator died"


def test_openapi_documents_the_live_and_seed_routes(private_emulator: EmbeddedEmulator) -> None:
    doc = _openapi(private_emulator)
    paths = doc["paths"]
    for path in (
        "/ingest",
        "/customers",
        "/customers/{customerId}",
        "/payments/pricing/amberflo/customer-pricing",
        "/payments/pricing/amberflo/customer-pricing/list",
        "/meters",
        "/meters/{meterId}",
        "/meter-definition",
        "/meter-definition/{meterApiName}",
        "/meter-event-filtering-rules",
        "/usage",
        "/usage/batch",
        "/usage/all",
        "/healthz",
        "/_emulator/faults",
        "/_emulator/stats",
        "/_emulator/records",
        "/_emulator/totals",
    ):
        assert path in paths, path
    assert paths["/ingest"]["post"]["operationId"] == "ingestMeterEvents"
    assert paths["/meter-definition"]["post"]["operationId"] == "createMeterDefinition"
    assert paths["/ingest"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert doc["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "X-API-KEY"
    assert paths["/healthz"]["get"]["security"] == []
    assert all("422" not in op["responses"] for ops in paths.values() for op in ops.values())
