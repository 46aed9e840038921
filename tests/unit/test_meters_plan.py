"""connector.amberflo.meters.plan: the diff ``meters sync`` prints and applies (pure)."""

from __future__ import annotations

from connector.amberflo import Meter
from connector.amberflo.meters import plan, summary
from connector.settings import MeterDefinition


def d(name: str, **fields: object) -> MeterDefinition:
    return MeterDefinition.model_validate({"meterApiName": name, **fields})


EXISTING = [
    Meter(id="1", meter_api_name="calls", label="Calls", dimensions=["region", "az"]),
    Meter(id="2", meter_api_name="bytes", label="Bytes", meter_type="max", description="x"),
    Meter(id="3", meter_api_name="unmanaged", label="Theirs"),
]


def test_create_update_unchanged() -> None:
    changes = plan(
        [
            d("calls", label="Calls", dimensions=["az", "region"]),  # same set of dimensions
            d("bytes", label="Bytes out", meterType="SUM_OF_ALL_USAGE"),
            d("new", dimensions=["region"]),
        ],
        EXISTING,
    )
    assert [(c.action, c.name) for c in changes] == [
        ("unchanged", "calls"),
        ("update", "bytes"),
        ("create", "new"),
    ]
    update = changes[1]
    assert update.fields == {
        "label": ("Bytes", "Bytes out"),
        "meter_type": ("max", "sum_of_all_usage"),
    }
    assert update.meter.id == "2" and update.meter.description == "x"  # unmanaged: kept
    assert update.describe() == (
        "~ bytes: update label 'Bytes' → 'Bytes out'; meterType 'max' → 'sum_of_all_usage'"
    )
    create = changes[2]
    assert create.meter.label == "new" and create.meter.meter_type == "sum_of_all_usage"
    assert create.describe() == (
        "+ new: create (label='new', meterType='sum_of_all_usage', dimensions=['region'])"
    )
    assert changes[0].describe() == "= calls: unchanged"
    assert summary(changes, dry_run=True) == (
        "1 to create, 1 to update, 1 unchanged (dry run: nothing changed)"
    )


def test_fields_left_out_are_not_managed() -> None:
    (change,) = plan([d("bytes")], EXISTING)
    assert change.action == "unchanged"
    assert summary([change], dry_run=False) == "no change: 1 meter(s) match the config"


def test_a_dimension_change_is_an_update() -> None:
    (change,) = plan([d("calls", dimensions=["region"])], EXISTING)
    assert change.action == "update"
    assert change.fields == {"dimensions": (["region", "az"], ["region"])}
