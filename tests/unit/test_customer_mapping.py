"""``kind: customer`` mappings: records of a team's own customer topic → customer updates."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from connector.errors import ConfigError, MappingError
from connector.formats import Mappers
from connector.formats.customers import CustomerMapper
from connector.records import CustomerUpdate, SourceRecord
from connector.settings import Settings, load_settings

TS = 1_700_000_000_000


def mapper(**rules: Any) -> CustomerMapper:
    entry = {"topics": ["crm"], "format": "json", "kind": "customer", **rules}
    s = Settings(kafka={"topics": ["crm"]}, amberflo={"api_key": "k"}, mappings=[entry])
    m = Mappers(s).for_topic("crm")
    assert isinstance(m, CustomerMapper)
    return m


def rec(value: Any) -> SourceRecord:
    return SourceRecord("crm", 0, 9, TS, None, orjson.dumps(value))


ACCOUNT = {
    "account": {"id": "acme", "display": "Acme Corp", "billing_email": "ap@acme.test"},
    "tier": "gold",
    "attrs": {"region": "eu", "seats": 12, "beta": True, "none": None},
    "at": "2024-01-01T00:00:10Z",
}


def test_every_key() -> None:
    m = mapper(
        customer_id={"path": "account.id"},
        name={"path": "account.display"},
        email={"path": "account.billing_email"},
        traits={"path": "attrs"},
        plan={"path": "tier"},
        time={"path": "at", "unit": "iso8601"},
    )
    assert m(rec(ACCOUNT)) == CustomerUpdate(
        "acme",
        "Acme Corp",
        "ap@acme.test",
        {"region": "eu", "seats": "12", "beta": "true"},
        "gold",
        1_704_067_210,
    )


def test_defaults_name_is_the_id_no_email_no_plan_time_is_kafkas() -> None:
    m = mapper(
        customer_id={"path": "account.id"},
        email={"path": "missing", "default": None},
        plan={"path": "missing", "default": None},
        traits={"tier": {"path": "tier"}, "source": "crm"},
    )
    assert m(rec(ACCOUNT)) == CustomerUpdate(
        "acme", "acme", None, {"tier": "gold", "source": "crm"}, None, TS // 1000
    )
    assert m(rec(ACCOUNT)).payload() == {
        "customerId": "acme",
        "customerName": "acme",
        "traits": {"tier": "gold", "source": "crm"},
    }


def test_missing_customer_id_is_a_mapping_error() -> None:
    with pytest.raises(MappingError, match=r"customer_id \{path: account.id\}: found nothing"):
        mapper(customer_id={"path": "account.id"})(rec({"tier": "x"}))
    with pytest.raises(MappingError, match=r"traits: must be an object"):
        mapper(customer_id={"path": "account.id"}, traits={"path": "tier"})(rec(ACCOUNT))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"kind": "customer", "meter": "m"}, "meter: not for kind: customer (usage only)"),
        ({"kind": "customer"}, "customer_id is required (kind customer)"),
        ({"meter": "m", "plan": {"path": "p"}}, "plan: only for kind: customer"),
        ({"format": "native", "kind": "customer"}, "kind customer needs a format that maps"),
        ({"meter": "m", "segment": {}}, "segment options are for format segment"),
    ],
)
def test_config_errors_name_the_mapping(entry: dict[str, Any], message: str) -> None:
    full = {"topics": ["crm"], "format": "json", "customer_id": {"path": "id"}, **entry}
    if message.startswith("customer_id is required"):
        full.pop("customer_id")
    with pytest.raises(ConfigError) as info:
        load_settings(kafka={"topics": ["crm"]}, amberflo={"api_key": "k"}, mappings=[full])
    assert message in str(info.value) and str(info.value).startswith("mappings[0]")


def test_cloudevents_customer_updates_read_context_attributes() -> None:
    """``kind: customer`` on CloudEvents: ``$ce`` paths in customer rules, the event's time
    as the default time."""
    m = mapper(
        format="cloudevents",
        customer_id={"path": "$ce.tenantid"},
        name={"path": "display"},
        traits={"source": {"path": "$ce.source"}},
    )
    event = {
        "specversion": "1.0",
        "id": "e1",
        "source": "/crm",
        "type": "customer.updated",
        "tenantid": "acme",
        "time": "2024-01-01T00:00:10Z",
        "data": {"display": "Acme Corp"},
    }
    assert m(rec(event)) == CustomerUpdate(
        "acme", "Acme Corp", None, {"source": "/crm"}, None, 1_704_067_210
    )
