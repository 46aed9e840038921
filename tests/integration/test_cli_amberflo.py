"""The Amberflo commands (`meters`, `customers`, `usage`) against the real emulator over HTTP;
what they write is read back through the emulator's API and the official Amberflo SDK."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from connector.amberflo import AmberfloClient, Meter
from connector.cli.main import cli
from tests.conftest import Emulator
from tests.integration.emulator_support import T0, unique

JAN1 = T0 // 1000  # 2024-01-01T00:00:00Z, a Monday


@pytest.fixture
def env(amberflo_emulator: Emulator) -> dict[str, str]:
    """Only the Amberflo keys: these commands need no Kafka setting."""
    return {
        **{k: "" for k in os.environ if k.startswith("CONNECTOR_")},
        "CONNECTOR_AMBERFLO__BASE_URL": amberflo_emulator.base_url,
        "CONNECTOR_AMBERFLO__API_KEY": amberflo_emulator.api_key,
        "CONNECTOR_SINK__RETRY_INITIAL_S": "0.05",
        "COLUMNS": "200",
    }


@pytest.fixture
def client(amberflo_emulator: Emulator) -> Iterator[AmberfloClient]:
    with AmberfloClient(amberflo_emulator.base_url, amberflo_emulator.api_key) as c:
        yield c


def invoke(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def run_cli(*calls: tuple[dict[str, str], list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """The real console entry point, one child process per (env, args), run side by side
    (exit codes, one-line errors)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    children = [
        (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "connector", *args],
                env={**base, **{k: v for k, v in env.items() if v}},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for env, args in calls
    ]
    done = []
    for args, child in children:
        out, err = child.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(args, child.returncode, out, err))
    return done


def test_meters_sync_creates_then_reports_no_change(
    env: dict[str, str], client: AmberfloClient, tmp_path: Path
) -> None:
    calls, storage, theirs = unique("calls"), unique("storage"), unique("theirs")
    client.create_meter(Meter(meter_api_name=theirs, label="Not in the config"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"meters:\n"
        f"  - {{meterApiName: {calls}, label: API calls, dimensions: [region]}}\n"
        f"  - {{meterApiName: {storage}, meterType: MAX, description: GB stored}}\n"
    )
    dry = invoke(env, "meters", "sync", "--config", str(cfg), "--dry-run").output.splitlines()
    assert dry == [
        f"+ {calls}: create (label='API calls', meterType='sum_of_all_usage', "
        "dimensions=['region'])",
        f"+ {storage}: create (label='{storage}', meterType='max', dimensions=[], "
        "description='GB stored')",
        "2 to create, 0 to update, 0 unchanged (dry run: nothing changed)",
    ]
    assert client.list_meters(calls) == []

    first = invoke(env, "meters", "sync", "--config", str(cfg)).output.splitlines()
    assert first[-1] == "2 created, 0 updated, 0 unchanged"
    (meter,) = client.list_meters(calls)
    assert (meter.label, meter.meter_type, meter.dimensions) == (
        "API calls",
        "sum_of_all_usage",
        ["region"],
    )
    assert client.list_meters(storage)[0].meter_type == "max"

    second = invoke(env, "meters", "sync", "--config", str(cfg)).output.splitlines()
    assert second == [
        f"= {calls}: unchanged",
        f"= {storage}: unchanged",
        "no change: 2 meter(s) match the config",
    ]

    cfg.write_text(cfg.read_text().replace("API calls", "Public API calls"))
    third = invoke(env, "meters", "sync", "--config", str(cfg)).output.splitlines()
    assert third[0] == f"~ {calls}: update label 'API calls' → 'Public API calls'"
    assert third[-1] == "0 created, 1 updated, 1 unchanged"
    assert client.list_meters(calls)[0].id == meter.id
    assert client.list_meters(theirs)[0].label == "Not in the config"  # never touched

    listed = orjson.loads(invoke(env, "meters", "list", "--json").output)
    assert {m["meterApiName"] for m in listed} >= {calls, storage, theirs}

    # The real process prints each line once: no log line on stderr repeating the diff.
    (again,) = run_cli((env, ["meters", "sync", "--config", str(cfg)]))
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert again.stdout.splitlines()[-1] == "no change: 2 meter(s) match the config"


def test_customers_upsert_get_plan_read_back_through_the_sdk(
    env: dict[str, str], client: AmberfloClient, sdk: str
) -> None:
    from metering.customer import CustomerApiClient
    from metering.customer_product_plan import CustomerProductPlanApiClient

    cid = unique("cli-customer")
    base = ("customers", "upsert", "--id", cid)
    created = invoke(
        env,
        *base,
        "--name",
        "Acme",
        "--email",
        "b@acme.test",
        "--trait",
        "tier=gold",
        "--trait",
        "region=eu",
    )
    assert created.output.strip() == f"created customer {cid!r}"
    got = CustomerApiClient(sdk).get(cid)
    assert (got["customerName"], got["customerEmail"]) == ("Acme", "b@acme.test")
    assert got["traits"] == {"tier": "gold", "region": "eu"}

    merged = invoke(env, *base, "--name", "Acme Corp", "--trait", "tier=platinum", "--merge")
    assert merged.output.strip() == (
        f"updated customer {cid!r}: name 'Acme' → 'Acme Corp'; trait tier 'gold' → 'platinum'"
    )
    assert CustomerApiClient(sdk).get(cid)["traits"] == {"tier": "platinum", "region": "eu"}
    replaced = invoke(env, *base, "--name", "Acme Corp")  # replace: email and traits dropped
    assert "email 'b@acme.test' → None" in replaced.output
    assert "trait region 'eu' → None" in replaced.output
    assert (
        "traits" not in CustomerApiClient(sdk).get(cid)
        or not CustomerApiClient(sdk).get(cid)["traits"]
    )
    assert invoke(env, *base, "--name", "Acme Corp").output.strip() == (
        f"customer {cid!r} unchanged"
    )

    plan = ("customers", "plan", "--id", cid, "--plan", "premium")
    assert invoke(env, *plan).output.startswith(f"assigned plan 'premium' to {cid!r}")
    assert (
        invoke(env, *plan).output.strip() == f"{cid!r} is already on plan 'premium': nothing to do"
    )
    history = CustomerProductPlanApiClient(sdk).list(cid)
    assert [p["productPlanId"] for p in history] == ["premium"]  # twice run, once assigned

    shown = invoke(env, "customers", "get", "--id", cid).output
    assert "Acme Corp" in shown and "premium (product 1" in shown
    doc = orjson.loads(invoke(env, "customers", "get", "--id", cid, "--json").output)
    assert doc["customer"]["customerId"] == cid and doc["plan"]["productPlanId"] == "premium"
    listed = orjson.loads(invoke(env, "customers", "list", "--json").output)
    assert cid in {c["customerId"] for c in listed}
    assert cid in invoke(env, "customers", "list").output


@pytest.fixture(scope="module")
def usage_data(amberflo_emulator: Emulator) -> tuple[str, str, str]:
    """One meter, two customers: a at 1 per hour for 50 h from Monday 2024-01-01 (values 1..50),
    b with 10 at 00:30 on Jan 1 and 5 on Feb 1."""
    meter, a, b = unique("cli-usage"), unique("a"), unique("b")
    hour = 3_600_000
    events = [
        {
            "customerId": a,
            "meterApiName": meter,
            "meterValue": i + 1,
            "meterTimeInMillis": T0 + i * hour,
            "uniqueId": f"a-{i}",
        }
        for i in range(50)
    ]
    events += [
        {
            "customerId": b,
            "meterApiName": meter,
            "meterValue": 10,
            "meterTimeInMillis": T0 + hour // 2,
            "uniqueId": "b-0",
        },
        {
            "customerId": b,
            "meterApiName": meter,
            "meterValue": 5,
            "meterTimeInMillis": T0 + 31 * 86_400_000,
            "uniqueId": "b-1",
        },
    ]
    with AmberfloClient(amberflo_emulator.base_url, amberflo_emulator.api_key) as c:
        assert c.ingest(events) == len(events)
    return meter, a, b


def usage_csv(env: dict[str, str], *args: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(invoke(env, "usage", *args, "--csv").output)))


@pytest.mark.parametrize(
    ("interval", "rows"),
    [
        (
            "hour",
            [["2024-01-01T00:00:00Z", "11", "1", "10"], ["2024-01-01T01:00:00Z", "2", "2", "0"]],
        ),
        (
            "day",
            [
                ["2024-01-01T00:00:00Z", "310", "300", "10"],
                ["2024-01-02T00:00:00Z", "876", "876", "0"],
                ["2024-01-03T00:00:00Z", "99", "99", "0"],
            ],
        ),
        ("week", [["2024-01-01T00:00:00Z", "1285", "1275", "10"]]),
        (
            "month",
            [
                ["2024-01-01T00:00:00Z", "1285", "1275", "10"],
                ["2024-02-01T00:00:00Z", "5", "0", "5"],
            ],
        ),
    ],
)
def test_usage_per_interval_grouped_by_customer(
    env: dict[str, str], usage_data: tuple[str, str, str], interval: str, rows: list[list[str]]
) -> None:
    meter, a, b = usage_data
    end = {
        "hour": "2024-01-01T02:00:00Z",
        "day": "2024-01-04",
        "week": "2024-01-08",
        "month": "2024-02-02",
    }[interval]
    table = usage_csv(
        env,
        "--meter",
        meter,
        "--from",
        "2024-01-01",
        "--to",
        end,
        "--interval",
        interval,
        "--group-by",
        "customerId",
    )
    header, *body, totals = table
    # columns: interval, then groups by total (a's 1275 before b's 15), then the total
    assert header[1:] == [a, b, "total"] or header[1:] == [b, a, "total"]
    by_name = {name: i for i, name in enumerate(header)}
    picked = [[r[0], r[by_name["total"]], r[by_name[a]], r[by_name[b]]] for r in body]
    assert picked == rows
    assert totals[0] == "total"
    assert float(totals[by_name["total"]]) == sum(float(r[1]) for r in rows)


def test_usage_filters_aggregations_and_json(
    env: dict[str, str], usage_data: tuple[str, str, str]
) -> None:
    meter, a, b = usage_data
    window = ("--meter", meter, "--from", "2024-01-01", "--to", "2024-01-03")
    only_b = usage_csv(env, *window, "--customer", b)
    assert only_b == [
        ["interval", "sum"],
        ["2024-01-01T00:00:00Z", "10"],
        ["2024-01-02T00:00:00Z", "0"],
        ["total", "10"],
    ]
    counts = usage_csv(env, *window, "--group-by", "customerId", "--aggregation", "count")
    assert counts[0][1:] == [a, b, "total"] and counts[-1][1:] == ["48", "1", "49"]
    highest = usage_csv(env, *window, "--group-by", "customerId", "--aggregation", "max")
    header = highest[0]
    assert header[-1] == "max" and highest[-1][0] == "max"
    assert highest[1][header.index(a)] == "24" and highest[1][-1] == "24"
    assert highest[-1][header.index(b)] == "10" and highest[-1][-1] == "48"
    raw = orjson.loads(invoke(env, "usage", *window, "--json").output)
    assert raw["metadata"]["meterApiName"] == meter
    assert raw["clientMeters"][0]["groupValue"] == 1186.0
    assert raw["secondsSinceEpochIntervals"] == [JAN1, JAN1 + 86_400]
    table = invoke(env, "usage", *window, "--group-by", "customerId").output
    assert "2024-01-01" in table and "1,186" not in table and "1186" in table


def test_errors_are_one_line_with_documented_exit_codes(env: dict[str, str]) -> None:
    unreachable = {
        **env,
        "CONNECTOR_AMBERFLO__BASE_URL": "http://127.0.0.1:1",
        "CONNECTOR_SINK__RETRY_TIMEOUT_S": "0.5",
    }
    missing, wrong, absent, down = run_cli(
        ({**env, "CONNECTOR_AMBERFLO__API_KEY": ""}, ["customers", "list"]),
        ({**env, "CONNECTOR_AMBERFLO__API_KEY": "nope"}, ["meters", "list"]),
        (env, ["customers", "get", "--id", unique("nobody")]),
        (unreachable, ["usage", "--meter", "m"]),
    )
    assert (missing.returncode, missing.stderr) == (
        2,
        "amberflo-connector: CONNECTOR_AMBERFLO__API_KEY: is required\n",
    )
    assert wrong.returncode == 1 and len(wrong.stderr.splitlines()) == 1
    assert "rejected the API key (HTTP 401" in wrong.stderr and "nope" not in wrong.stderr
    assert absent.returncode == 3 and absent.stderr.startswith("amberflo-connector: no customer")
    assert down.returncode == 1 and "Traceback" not in down.stderr
    last = down.stderr.splitlines()[-1]  # after the retry warnings
    assert re.match(
        r"amberflo-connector: Amberflo API call kept failing for [0-2]s "
        r"\(CONNECTOR_SINK__RETRY_TIMEOUT_S\): POST http://127.0.0.1:1/usage",
        last,
    )
    bad = CliRunner().invoke(
        cli, ["customers", "upsert", "--id", "x", "--name", "y", "--trait", "v"]
    )
    assert bad.exit_code == 2 and "give key=value" in bad.output


@pytest.mark.parametrize(
    "command",
    [
        ("meters", "sync"),
        ("meters", "list"),
        ("customers", "list"),
        ("customers", "get"),
        ("customers", "upsert"),
        ("customers", "plan"),
        ("usage",),
    ],
)
def test_every_command_has_help_with_an_example_and_exit_codes(command: tuple[str, ...]) -> None:
    text = CliRunner().invoke(cli, [*command, "--help"], env={"COLUMNS": "100"}).output
    assert "Example" in text and "amberflo-connector " in text
    assert "Exit codes: 0 done; 1 Amberflo refused" in text


def test_tables_piped_to_a_file_are_whole(env: dict[str, str], client: AmberfloClient) -> None:
    """Piped (no terminal, no COLUMNS), a table is as wide as its cells, not squeezed into
    80 columns with every long cell cut or wrapped: `meters list > meters.txt` is usable."""
    name = unique("a-meter-with-a-rather-long-api-name")
    description = "Calls to the public API, counted per request, including the retried ones"
    client.create_meter(
        Meter(meter_api_name=name, label="Public API calls", description=description)
    )
    (listed,) = run_cli(({**env, "COLUMNS": ""}, ["meters", "list"]))
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if name in line]
    assert "sum_of_all_usage" in row and description in row, listed.stdout
