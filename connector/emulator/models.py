"""Request bodies of the emulator's JSON routes (they also document /openapi.json).

Unknown fields are ignored, like the live API does.  A body that fails these models is
answered with 400 ``{"message", "code": "BAD_REQUEST", "details": [{"field", "problem"}]}``.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connector.emulator.usage import MAX_SECONDS

_METER_TYPE = r"^[A-Za-z][A-Za-z_]*$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CustomerIn(_Body):
    customerId: str = Field(min_length=1, description="The customer's id in your system.")
    customerName: str = Field(min_length=1)
    customerEmail: str | None = None
    enabled: bool = True
    traits: dict[str, str] | None = None
    description: str | None = None
    lifecycleStage: str | None = None
    address: dict[str, Any] | None = None


class CustomerPricingIn(_Body):
    customerId: str = Field(min_length=1)
    productPlanId: str = Field(min_length=1)
    productId: str = Field("1", min_length=1)
    startTimeInSeconds: int | None = Field(None, ge=0, le=MAX_SECONDS)
    endTimeInSeconds: int | None = Field(None, ge=0, le=MAX_SECONDS)


class MeterIn(_Body):
    """The live ``/meters`` shape; ``meterType`` is stored lower-case."""

    id: str | None = Field(None, min_length=1, description="Required for PUT.")
    meterApiName: str = Field(min_length=1)
    label: str | None = Field(None, description="Display name; defaults to meterApiName.")
    meterType: str = Field("sum_of_all_usage", pattern=_METER_TYPE)
    description: str | None = None
    dimensions: list[str] = Field(default_factory=list)


class MeterDefinitionIn(_Body):
    """The seed OpenAPI's ``/meter-definition`` shape (displayName = label, type upper-case)."""

    meterApiName: str = Field(min_length=1)
    displayName: str = Field(min_length=1)
    type: str = Field(
        pattern=_METER_TYPE,
        description="SUM_OF_ALL_USAGE, MAX_IN_PERIOD, UNIQUE_CUSTOMERS_COUNT, ...",
    )
    label: str | None = None
    dimensions: list[str] = Field(default_factory=list)


class FilteringRuleIn(_Body):
    """Without ``ruleId`` the rule with the same meter, dimension and action is updated
    (or a new one created), so posting the same rule twice is idempotent."""

    meterApiName: str = Field(min_length=1)
    ruleId: str | None = Field(None, min_length=1)
    dimensionName: str = Field(min_length=1)
    dimensionValues: list[str] = Field(default_factory=list)
    action: str = Field(pattern=r"^(?i:INCLUDE|EXCLUDE)$")


class TimeRangeIn(_Body):
    startTimeInSeconds: int = Field(ge=1, le=MAX_SECONDS)
    endTimeInSeconds: int | None = Field(None, ge=1, le=MAX_SECONDS)


class TakeIn(_Body):
    limit: int = Field(ge=1)
    isAscending: bool = False


class UsageQueryIn(_Body):
    """A live usage query; the seed's top-level start/end and customerFilter also work."""

    meterApiName: str = Field(min_length=1)
    aggregation: str = Field(pattern=r"^(?i:SUM|COUNT|MIN|MAX)$")
    timeGroupingInterval: str = Field(pattern=r"^(?i:HOUR|DAY|WEEK|MONTH)$")
    timeRange: TimeRangeIn | None = None
    startTimeInSeconds: int | None = Field(None, ge=1, le=MAX_SECONDS)
    endTimeInSeconds: int | None = Field(None, ge=1, le=MAX_SECONDS)
    groupBy: list[str] | None = None
    filter: dict[str, list[str]] | None = None
    customerFilter: list[str] | None = None
    take: TakeIn | None = None


class FaultIn(_Body):
    """The next ``count`` requests whose path starts with ``path`` (any non-control path
    when omitted) and whose method is ``method`` (any when omitted) stall ``latency_ms``
    and/or fail with ``status``.  With ``after`` the request is processed first (its change
    is stored) and only the answer is delayed or replaced: a lost answer."""

    status: int | None = Field(None, ge=400, le=599)
    count: int = Field(1, ge=1, le=1_000_000)
    retry_after: float | None = Field(None, ge=0, le=86_400)
    latency_ms: int = Field(0, ge=0, le=600_000)
    path: str | None = Field(None, min_length=1)
    method: str | None = Field(None, pattern=r"^[A-Za-z]+$")
    after: bool = False

    @model_validator(mode="after")
    def _status_or_latency(self) -> Self:
        if self.status is None and self.latency_ms <= 0:
            raise ValueError("give a status, a positive latency_ms, or both")
        return self
