"""``meters sync``: make Amberflo's meter definitions match the config's ``meters`` list.

One idempotent step instead of the seeds' "create the meter definition, then ingest":

* a configured meter that Amberflo does not have is created;
* one that differs in a field the config gives (label, meterType, dimensions, description)
  is updated (``PUT /meters`` with its id); fields the config leaves out are not managed;
  dimensions compare as a set (their order carries no meaning);
* Amberflo's other meters are left alone (never deleted).

``plan`` is pure (the diff, also for ``--dry-run``); ``apply`` carries it out.  Run twice,
the second run plans nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from connector.amberflo.client import AmberfloClient
from connector.amberflo.models import Meter
from connector.amberflo.status import AmberfloApiError
from connector.settings import MeterDefinition

MANAGED = ("label", "meter_type", "dimensions", "description")
WIRE_NAMES = {"label": "label", "meter_type": "meterType", "dimensions": "dimensions"}


@dataclass(frozen=True)
class Change:
    action: Literal["create", "update", "unchanged"]
    meter: Meter  # what Amberflo holds after the change
    fields: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name → (old, new)
    wanted: MeterDefinition | None = None  # the config's definition

    @property
    def name(self) -> str:
        return self.meter.meter_api_name

    def describe(self) -> str:
        """One line of the diff: ``+ create``, ``~ update`` (old → new per field), ``=``."""
        if self.action == "create":
            shown = self.meter.wire()
            keys = ("label", "meterType", "dimensions", "description")
            parts = [f"{k}={shown[k]!r}" for k in keys if k in shown]
            return f"+ {self.name}: create ({', '.join(parts)})"
        if self.action == "update":
            parts = [
                f"{WIRE_NAMES.get(k, k)} {old!r} → {new!r}" for k, (old, new) in self.fields.items()
            ]
            return f"~ {self.name}: update {'; '.join(parts)}"
        return f"= {self.name}: unchanged"


def _same(name: str, old: Any, new: Any) -> bool:
    if name == "dimensions":
        return sorted(old or []) == sorted(new or [])
    return bool(old == new)


def plan(desired: Sequence[MeterDefinition], existing: Sequence[Meter]) -> list[Change]:
    """The changes that make ``existing`` match ``desired``, in ``desired``'s order."""
    by_name = {m.meter_api_name: m for m in existing}
    changes = []
    for want in desired:
        given = want.model_dump(include=set(MANAGED), exclude_none=True)
        have = by_name.get(want.meter_api_name)
        if have is None:
            meter = Meter(meter_api_name=want.meter_api_name, **given)
            if meter.label is None:
                meter.label = meter.meter_api_name
            changes.append(Change("create", meter, wanted=want))
            continue
        diff = {
            k: (getattr(have, k), v) for k, v in given.items() if not _same(k, getattr(have, k), v)
        }
        if diff:
            changes.append(Change("update", have.model_copy(update=given), diff, want))
        else:
            changes.append(Change("unchanged", have, wanted=want))
    return changes


def apply(client: AmberfloClient, changes: Sequence[Change]) -> list[Change]:
    """Create and update what ``changes`` say; returns them with Amberflo's answers.

    A create answered 409 (the meter appeared meanwhile, or a retried create whose first
    answer was lost) is re-planned against what Amberflo now holds.
    """
    done = []
    for change in changes:
        if change.action == "create":
            try:
                created = client.create_meter(change.meter)
            except AmberfloApiError as exc:
                if exc.status != 409 or change.wanted is None:
                    raise
                (again,) = plan([change.wanted], client.list_meters(change.name))
                done.extend(apply(client, [again]))
                continue
            change = Change("create", created, wanted=change.wanted)
        elif change.action == "update":
            updated = client.update_meter(change.meter)
            change = Change("update", updated, change.fields, change.wanted)
        done.append(change)
    return done


def sync(
    client: AmberfloClient, desired: Sequence[MeterDefinition], *, dry_run: bool
) -> list[Change]:
    """Plan against Amberflo's meters and, unless ``dry_run``, apply."""
    changes = plan(desired, client.list_meters())
    return changes if dry_run else apply(client, changes)


def summary(changes: Sequence[Change], *, dry_run: bool) -> str:
    counts = {a: sum(c.action == a for c in changes) for a in ("create", "update", "unchanged")}
    if not counts["create"] and not counts["update"]:
        return f"no change: {counts['unchanged']} meter(s) match the config"
    verbs = ("to create", "to update") if dry_run else ("created", "updated")
    return (
        f"{counts['create']} {verbs[0]}, {counts['update']} {verbs[1]}, "
        f"{counts['unchanged']} unchanged" + (" (dry run: nothing changed)" if dry_run else "")
    )
