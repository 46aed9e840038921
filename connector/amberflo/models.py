"""Typed request and response bodies of the Amberflo API, in their live shapes (the emulator
serves the same; docs/emulator.md lists where the live API and the seed OpenAPI differ).

Attributes are snake_case in Python and camelCase on the wire (``customer_id`` ↔
``customerId``); both spellings are accepted when building a model.  Unknown fields of a
response are kept (``extra="allow"``), so ``wire()`` returns what Amberflo sent; ``None``
fields are left out of a body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

JSON = dict[str, Any]

Aggregation = Literal["SUM", "COUNT", "MIN", "MAX"]
Interval = Literal["HOUR", "DAY", "WEEK", "MONTH"]


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def wire(self) -> JSON:
        """The JSON object Amberflo sends or expects (camelCase; ``None`` fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Customer(Wire):
    customer_id: str = Field(min_length=1)
    customer_name: str = Field(min_length=1)
    customer_email: str | None = None
    enabled: bool | None = None
    traits: dict[str, str] = Field(default_factory=dict)
    description: str | None = None
    lifecycle_stage: str | None = None
    address: JSON | None = None
    create_time: int | None = None
    update_time: int | None = None


class PlanAssignment(Wire):
    """A customer's relation to a product plan (``/payments/pricing/amberflo/customer-pricing``)."""

    customer_id: str = Field(min_length=1)
    product_plan_id: str = Field(min_length=1)
    product_id: str = "1"
    start_time_in_seconds: int | None = None
    end_time_in_seconds: int | None = None
    relation_id: str | None = None
    created_time_in_seconds: int | None = None


class Meter(Wire):
    """A meter definition (live ``/meters``; ``meterType`` is lower-case on the wire)."""

    id: str | None = None
    meter_api_name: str = Field(min_length=1)
    label: str | None = None
    meter_type: str = "sum_of_all_usage"
    description: str | None = None
    dimensions: list[str] = Field(default_factory=list)
    create_time: int | None = None
    update_time: int | None = None

    @field_validator("meter_type")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class TimeRange(Wire):
    start_time_in_seconds: int
    end_time_in_seconds: int | None = None


class Take(Wire):
    limit: int = Field(ge=1)
    is_ascending: bool = False


class UsageQuery(Wire):
    meter_api_name: str = Field(min_length=1)
    aggregation: Aggregation = "SUM"
    time_grouping_interval: Interval = "DAY"
    time_range: TimeRange
    group_by: list[str] | None = None
    filter: dict[str, list[str]] | None = None
    take: Take | None = None


def usage_query(
    meter_api_name: str,
    start_time_in_seconds: int,
    end_time_in_seconds: int | None = None,
    *,
    aggregation: Aggregation = "SUM",
    interval: Interval = "DAY",
    group_by: Sequence[str] | None = None,
    filters: Mapping[str, Sequence[str]] | None = None,
    take: int | None = None,
    ascending: bool = False,
) -> UsageQuery:
    """A ``/usage`` query; unset options are left out of the body."""
    time_range = TimeRange(start_time_in_seconds=start_time_in_seconds)
    if end_time_in_seconds is not None:
        time_range.end_time_in_seconds = end_time_in_seconds
    query = UsageQuery(
        meter_api_name=meter_api_name,
        aggregation=aggregation,
        time_grouping_interval=interval,
        time_range=time_range,
    )
    if group_by:
        query.group_by = list(group_by)
    if filters:
        query.filter = {k: list(v) for k, v in filters.items()}
    if take is not None:
        query.take = Take(limit=take, is_ascending=ascending)
    return query


class UsageValue(Wire):
    seconds_since_epoch_utc: int
    value: float
    percentage_from_previous: float | None = None


class UsageGroup(Wire):
    group_info: dict[str, str] | None = None


class ClientMeter(Wire):
    """One group's series: its total over the range and one value per interval."""

    group: UsageGroup | None = None
    group_value: float = 0.0
    values: list[UsageValue] = Field(default_factory=list)

    @property
    def group_info(self) -> dict[str, str]:
        return (self.group.group_info if self.group else None) or {}


class UsageReport(Wire):
    metadata: JSON = Field(default_factory=dict)
    seconds_since_epoch_intervals: list[int] = Field(default_factory=list)
    client_meters: list[ClientMeter] = Field(default_factory=list)
