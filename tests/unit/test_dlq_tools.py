"""Pure parts of the DLQ tools: header parsing in both styles, replay headers, summaries."""

from __future__ import annotations

import pytest

from connector.dlq.inspect import FirstLetters, Summary
from connector.dlq.publish import error_headers
from connector.dlq.replay import ReplayReport
from connector.dlq.view import DeadLetterView
from connector.records import DeadLetter, SourceRecord
from connector.timefmt import parse_time

REC = SourceRecord("usage", 3, 41, 1_767_225_600_000, b"k", b'{"x":1}', (("trace", b"t1"),))


def view(
    letter: DeadLetter, style: str, extra: tuple[tuple[str, bytes | None], ...] = ()
) -> DeadLetterView:
    r = letter.record
    headers = r.headers + extra + error_headers(letter, style, "grp", 1_767_225_700_000)
    return DeadLetterView.parse("usage.dlq", 0, 7, r.timestamp_ms, r.key, r.value, headers)


@pytest.mark.parametrize("style", ["amberflo", "connect"])
@pytest.mark.parametrize(
    ("stage", "cls", "status"),
    [
        ("decode", "DecodeError", None),
        ("transform", "MappingError", None),
        ("sink", "EventRejected", 400),
    ],
)
def test_both_header_styles_parse_back(
    style: str, stage: str, cls: str, status: int | None
) -> None:
    v = view(DeadLetter(REC, stage, cls, "it broke", status), style)
    assert v.style == style and v.stage == stage
    assert v.error_class == (cls if style == "amberflo" else f"connector.errors.{cls}")
    assert v.message == "it broke"
    assert v.http_status == (status if style == "amberflo" else None)
    assert (v.source_topic, v.source_partition, v.source_offset) == ("usage", 3, 41)
    assert v.origin == "usage/3/41"
    if style == "amberflo":
        assert v.failed_at_ms == 1_767_225_700_000
    assert v.failed_or_timestamp_ms == (
        1_767_225_700_000 if style == "amberflo" else REC.timestamp_ms
    )


@pytest.mark.parametrize("style", ["amberflo", "connect"])
def test_replay_headers_strip_errors_add_origin_and_count(style: str) -> None:
    v = view(DeadLetter(REC, "sink", "EventRejected", "no", 400), style)
    assert v.replay_headers() == [
        ("trace", b"t1"),
        ("amberflo.origin", b"usage/3/41"),
        ("amberflo.replay.count", b"1"),
        ("amberflo.replay.source", b"usage.dlq/0/7"),
    ]


def test_a_twice_failed_record_keeps_its_first_origin() -> None:
    again = (
        ("amberflo.origin", b"usage/1/5"),
        ("amberflo.replay.count", b"1"),
        ("amberflo.replay.source", b"usage.dlq/0/2"),
    )
    v = view(DeadLetter(REC, "transform", "MappingError", "no"), "amberflo", again)
    assert v.origin == "usage/1/5"
    assert v.replay_headers() == [
        ("trace", b"t1"),
        ("amberflo.origin", b"usage/1/5"),
        ("amberflo.replay.count", b"2"),
        ("amberflo.replay.source", b"usage.dlq/0/7"),
    ]


def test_json_form_flags_binary_values() -> None:
    rec = SourceRecord("usage", 0, 1, 5, None, b"\xff\x00", ())
    j = view(DeadLetter(rec, "decode", "DecodeError", "bad"), "amberflo").to_json()
    assert j["value"] == "/wA=" and j["value_base64"] is True
    assert j["key"] is None and j["key_base64"] is False
    assert {"key": "amberflo.error.stage", "value": "decode", "base64": False} in j["headers"]
    assert j["source"] == {"topic": "usage", "partition": 0, "offset": 1}


def test_unknown_headers_are_not_a_dead_letter_we_wrote() -> None:
    v = DeadLetterView.parse("t", 0, 0, 1, None, b"v", (("x", b"y"),))
    assert v.style == "unknown" and v.stage is None and v.origin is None


def test_summary_line_counts_by_stage_and_class() -> None:
    s = Summary()
    for stage, cls in [
        ("sink", "EventRejected"),
        ("decode", "DecodeError"),
        ("sink", "EventRejected"),
        ("transform", "MappingError"),
    ]:
        s.add(view(DeadLetter(REC, stage, cls, "m"), "amberflo"))
    assert s.line() == (
        "4 dead letters — decode 1 (DecodeError 1); transform 1 "
        "(MappingError 1); sink 2 (EventRejected 2)"
    )
    assert Summary().line() == "0 dead letters"


def test_replay_report_line() -> None:
    r = ReplayReport(read=5, skipped=2, already=1)
    r.republished["usage"] = 2
    assert r.line() == (
        "republished 2 of 5 dead letters read (usage 2); 2 not selected; "
        "1 already republished by an interrupted run"
    )


def test_parse_time_forms() -> None:
    assert parse_time("1767225600000") == 1_767_225_600_000
    assert parse_time("2026-01-01T00:00:00Z") == 1_767_225_600_000
    assert parse_time("2026-01-01T00:00:00") == 1_767_225_600_000  # naive: UTC
    assert parse_time("2026-01-01T01:00:00+01:00") == 1_767_225_600_000
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_several_letters_of_one_record_are_one() -> None:
    """Letters older versions wrote again after a crash: same source coordinates (in either
    header style) are the same record; a letter without coordinates is always its own."""
    a = view(DeadLetter(REC, "decode", "DecodeError", "x"), "amberflo")
    again = view(DeadLetter(REC, "decode", "DecodeError", "x"), "connect")
    other = view(DeadLetter(REC._replace(offset=42), "decode", "DecodeError", "x"), "amberflo")
    bare = DeadLetterView.parse("usage.dlq", 0, 9, 1, None, b"x", ())
    firsts = FirstLetters()
    assert [firsts.first(v) for v in (a, again, other, a, bare, bare)] == [
        True,
        False,
        True,
        False,
        True,
        True,
    ]
    assert firsts.duplicates == 2


def test_letters_of_two_incarnations_of_a_topic_are_two_records() -> None:
    old_id, new_id = "0b7f1d2e-93c4-4a8e-8f1a-2c6d5e4b3a10", "6a3e0c55-1f2b-4c9d-8e7f-0a1b2c3d4e5f"
    old = view(
        DeadLetter(REC, "sink", "EventRejected", "x", 400, f"usage@{old_id}/3/41"), "amberflo"
    )
    new = view(
        DeadLetter(REC, "sink", "EventRejected", "x", 400, f"usage@{new_id}/3/41"), "amberflo"
    )
    assert (old.incarnation, new.incarnation) == (old_id, new_id)
    firsts = FirstLetters()
    assert firsts.first(old) and firsts.first(new) and not firsts.first(new)
    # a replayed record's origin names its first coordinates, not its own: no incarnation
    replayed = view(
        DeadLetter(REC, "sink", "EventRejected", "x", 400, f"first@{old_id}/0/1"), "amberflo"
    )
    assert replayed.incarnation is None
