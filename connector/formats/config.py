"""The ``mappings`` section of the configuration: which topics are read in which format, and
the rules that turn a decoded record into meter events (docs/mappings.md has the syntax).

Everything here is checked when the settings load: an unknown format, a schema file that does
not exist, a path or expression that does not compile, a rule that makes no sense for its key
is one configuration error naming the key (``mappings[0].customer_id.path: …``), exit 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.errors import MappingError
from connector.formats.paths import attribute_name, expr_getter

Scalar = str | int | float | bool
TimeUnit = Literal["ms", "s", "iso8601"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    """Where a value comes from: ``{path: …}``, ``{expr: …}`` or ``{constant: …}``.

    A bare scalar in the YAML (``meter: api_calls``) is short for ``{constant: api_calls}``.
    ``default`` is used when the path or expression finds nothing (or null); without one,
    finding nothing is a MappingError.  ``unit`` is for ``time`` only.
    """

    path: str | None = None
    expr: str | None = None
    constant: Scalar | None = None
    default: Scalar | None = None
    unit: TimeUnit | None = None

    @model_validator(mode="before")
    @classmethod
    def _scalar_is_constant(cls, value: Any) -> Any:
        if isinstance(value, str | int | float | bool):
            return {"constant": value}
        return value

    @field_validator("path")
    @classmethod
    def _path_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            attribute_name(value)  # parses the path; a $ce path must name one attribute
        return value

    @field_validator("expr")
    @classmethod
    def _expr_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            expr_getter(value, "expr")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Rule:
        given = [k for k in ("path", "expr", "constant") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of path, expr or constant"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.constant is not None and self.has_default:
            raise ValueError("a constant takes no default")
        return self

    @property
    def has_default(self) -> bool:
        """True when ``default`` was given, even as null (a dimension then may be absent)."""
        return "default" in self.model_fields_set

    @property
    def attribute(self) -> str | None:
        """The CloudEvents attribute a ``{path: $ce.<name>}`` rule reads (None otherwise)."""
        return None if self.path is None else attribute_name(self.path)


class Filter(_Model):
    """Keep (INCLUDE) or drop (EXCLUDE) records by the value of one of the mapping's
    dimensions.  A dropped record is committed, counted, and never sent."""

    dimension: str = Field(min_length=1)
    values: list[str] = Field(min_length=1)
    action: Literal["INCLUDE", "EXCLUDE"]
    name: str | None = Field(None, description="Label of the filtered-records metric.")

    @field_validator("values", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        from connector.formats.fields import dimension_text

        if isinstance(value, list):
            try:
                return [dimension_text(v, "values") if not isinstance(v, str) else v for v in value]
            except MappingError as exc:  # a record's error elsewhere, a setting's here
                raise ValueError(str(exc).removeprefix("values: ")) from None
        return value

    @field_validator("action", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def label(self) -> str:
        return self.name or f"{self.dimension} {self.action}"


class SegmentOptions(_Model):
    """``segment:`` of a ``format: segment`` entry (docs/segment.md)."""

    events: dict[str, str | dict[str, str | None]] = Field(
        default_factory=dict,
        description="track event name → its meter (default: the event name itself), or → "
        "{meter: property holding its value (null: 1)} for several meters per call.",
    )
    plan_trait: str | None = Field(
        "plan", description="identify trait naming the product plan to assign (null: none)."
    )

    @field_validator("events")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for event, target in value.items():
            if not event or not target:
                raise ValueError(f"event {event!r}: give a meter name or a non-empty map")
            if isinstance(target, dict) and not all(target):
                raise ValueError(f"event {event!r}: a meter name is empty")
        return value


class Mapping(_Model):
    """One entry of ``mappings``: the topics it reads, their format, and the rules."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    topics: list[str] = Field(min_length=1)
    format: str = "native"
    schema_file: Path | None = Field(None, alias="schema")
    meter: Rule | None = None
    customer_id: Rule | None = None
    value: Rule | None = None
    time: Rule | None = None
    dimensions: dict[str, Rule] = Field(default_factory=dict)
    unique_id: Rule | None = None
    meters: dict[str, Rule] | None = None
    filters: list[Filter] = Field(default_factory=list)
    kind: Literal["usage", "customer"] = "usage"
    name: Rule | None = None
    email: Rule | None = None
    traits: Rule | dict[str, Rule] | None = Field(None, union_mode="left_to_right")
    plan: Rule | None = None
    segment: SegmentOptions | None = None

    @field_validator("topics")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for topic in value:
            if not topic:
                raise ValueError("a topic name is empty")
            if topic.startswith("^"):
                try:
                    re.compile(topic)
                except re.error as exc:
                    raise ValueError(
                        f"{topic!r} is not a valid regular expression: {exc}"
                    ) from None
        return value

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from connector.formats import known_formats

        if value not in known_formats():
            raise ValueError(f"unknown format {value!r} (known: {', '.join(known_formats())})")
        return value

    @field_validator("schema_file")
    @classmethod
    def _schema_exists(cls, value: Path | None) -> Path | None:
        if value is not None:
            value = value.expanduser()
            if not value.is_file():
                raise ValueError(f"schema file {str(value)!r} does not exist")
        return value

    @model_validator(mode="after")
    def _rules_fit_the_format(self) -> Mapping:
        rules = ("meter", "customer_id", "value", "time", "unique_id", "meters")
        given = [k for k in rules if getattr(self, k) is not None]
        if self.dimensions:
            given.append("dimensions")
        customer_keys = [k for k in ("name", "email", "traits", "plan") if getattr(self, k)]
        if self.segment is not None and self.format != "segment":
            raise ValueError(f"segment options are for format segment (this is {self.format})")
        if self.format == "segment":
            if given or customer_keys or self.filters or self.kind != "usage":
                extra = [*given, *customer_keys, *(["filters"] if self.filters else [])]
                raise ValueError(
                    "format segment maps Segment calls itself and takes no rules"
                    + (f" ({', '.join(extra)})" if extra else f" nor kind {self.kind}")
                    + "; its options go under segment:"
                )
            return self
        if self.format != "cloudevents":
            for name, rule in self.rules():
                if rule.attribute is not None:
                    raise ValueError(
                        f"{name}: {rule.path} reads a CloudEvents attribute; "
                        f"format {self.format} has none"
                    )
        if self.kind == "customer":
            return self._customer_rules(given)
        if customer_keys:
            raise ValueError(f"{', '.join(customer_keys)}: only for kind: customer")
        if self.format == "native":
            if given:
                raise ValueError(
                    f"format native reads Amberflo-shaped records and takes no rules "
                    f"({', '.join(given)}); use format json (or another) to map fields"
                )
            return self
        if self.customer_id is None:
            raise ValueError(f"customer_id is required (format {self.format})")
        if (self.meter is None) == (self.meters is None):
            raise ValueError("give meter (with value) or meters, exactly one of them")
        if self.meters is not None and self.value is not None:
            raise ValueError("value goes with meter; with meters each meter names its value")
        if self.meters is not None and not self.meters:
            raise ValueError("meters is empty")
        if self.unique_id is not None and self.unique_id.constant is not None:
            raise ValueError("unique_id must be a path or expr: a constant would collide")
        self._no_units(rules)
        for f in self.filters:
            if f.dimension not in self.dimensions:
                raise ValueError(
                    f"filters: dimension {f.dimension!r} is not one of this mapping's "
                    f"dimensions ({', '.join(self.dimensions) or 'none'})"
                )
        return self

    def _customer_rules(self, given: list[str]) -> Mapping:
        """``kind: customer``: customer_id (required), name, email, traits, plan, time."""
        if self.format == "native":
            raise ValueError("kind customer needs a format that maps by rules (json, …)")
        if self.customer_id is None:
            raise ValueError("customer_id is required (kind customer)")
        usage_only = [k for k in given if k not in ("customer_id", "time")]
        if self.filters:
            usage_only.append("filters")
        if usage_only:
            raise ValueError(f"{', '.join(usage_only)}: not for kind: customer (usage only)")
        self._no_units(("customer_id", "name", "email", "plan"))
        if isinstance(self.traits, Rule) and self.traits.unit is not None:
            raise ValueError("traits takes no unit (unit is for time only)")
        return self

    def _no_units(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            rule = getattr(self, key)
            if isinstance(rule, Rule) and rule.unit is not None and key != "time":
                raise ValueError(f"{key} takes no unit (unit is for time only)")
        named = {**self.dimensions, **(self.meters or {})}
        if isinstance(self.traits, dict):
            named.update(self.traits)
        for name, rule in named.items():
            if rule.unit is not None:
                raise ValueError(f"{name} takes no unit (unit is for time only)")

    def rules(self) -> list[tuple[str, Rule]]:
        """Every rule of the entry with the key that names it in errors (``dimensions.region``)."""
        keys = ("meter", "customer_id", "value", "time", "unique_id")
        found = [(k, r) for k in keys if (r := getattr(self, k)) is not None]
        found += [(f"dimensions.{n}", r) for n, r in self.dimensions.items()]
        found += [(f"meters.{n}", r) for n, r in (self.meters or {}).items()]
        found += [(k, r) for k in ("name", "email", "plan") if (r := getattr(self, k)) is not None]
        if isinstance(self.traits, Rule):
            found.append(("traits", self.traits))
        elif self.traits is not None:
            found += [(f"traits.{n}", r) for n, r in self.traits.items()]
        return found

    @property
    def attributes(self) -> tuple[str, ...]:
        """The CloudEvents context attributes the rules read (``$ce.<name>`` paths), sorted."""
        return tuple(sorted({a for _k, r in self.rules() if (a := r.attribute) is not None}))


FILE_KEYS = ("schema", "schema_file")
"""The keys of a ``mappings`` entry that name a file (``schema_file`` is ``schema``'s field
name, which an entry may use too)."""


def files_relative_to(mappings: Any, base: Path) -> Any:
    """``mappings`` as a config file gives it, with each relative file it names (``schema``)
    joined to ``base``, the file's directory: a path in a config file is relative to that
    file, wherever the connector is started.  Paths given elsewhere (``CONNECTOR_MAPPINGS``)
    stay relative to the working directory.  Anything not shaped like a list of entries is
    left for validation to name."""
    if not isinstance(mappings, list):
        return mappings
    out = []
    for entry in mappings:
        if isinstance(entry, dict):
            entry = dict(entry)
            for key in FILE_KEYS:
                given = entry.get(key)
                if isinstance(given, str) and given:
                    path = Path(given).expanduser()
                    entry[key] = str(path if path.is_absolute() else base / path)
        out.append(entry)
    return out
