"""Property-based fuzzing of every Kafka message parser: a message of any shape (any JSON value, deep nesting,
binary, huge, wrong types) is a parsed row or a dead letter with its partition, offset and reason — never an
exception that fails the day, and every record is accounted for exactly once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podrec_assets.core.days import day_start_ms
from podrec_assets.core.episodes import parse_episode_records
from podrec_assets.core.events import Catalog, InvalidEvent, _checked, _json_payload, parse_event, split_day

DAY = date(2026, 3, 1)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=40,
)
EVENT_FIELDS = [
    "event_id",
    "ts",
    "user_id",
    "episode_id",
    "event",
    "device",
    "rating",
    "position_sec",
    "from_sec",
    "to_sec",
    "played_pct",
]
# objects with the contract's field names holding values of any type: the wrong-type paths, not only bad JSON
near_events = st.fixed_dictionaries({}, optional={name: json_values for name in EVENT_FIELDS}).map(
    lambda d: json.dumps(d).encode()
)
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    near_events,
    st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n),  # nesting deeper than any decoder's recursion
    st.integers(1, 50_000).map(lambda n: b'{"event_id": ' + b'{"a": ' * n + b"1" + b"}" * (n + 1)),
    st.just(b'{"user_id": "' + b"u" * 1_000_000 + b'", "ts": ' + b"9" * 100_000 + b"}"),  # huge field and number
    st.none(),
)


@dataclass
class Record:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


def records_of(values: list[bytes | None], timestamps: list[int]) -> list[Record]:
    return [Record(i % 3, i, ts, b"k", v) for i, (v, ts) in enumerate(zip(values, timestamps))]


@FUZZ
@given(payloads)
def test_parse_event_returns_an_event_or_raises_invalid_event(value):
    try:
        event = parse_event(value)
    except InvalidEvent as exc:
        assert str(exc).split(":", 1)[0] in {"invalid_json", "missing_field", "wrong_type", "invalid_value"}
        return
    assert isinstance(event["user_id"], str) and isinstance(event["ts"], datetime)


def _outcome(parse, value):
    try:
        return repr(parse(value))  # repr: NaN equals itself
    except InvalidEvent as exc:
        return f"InvalidEvent {exc}"


def _parse_as_json_reads_it(value):
    return _checked(_json_payload(value), text_checked=False) if value is not None else parse_event(value)


def _event_with(**fields) -> bytes:
    event = {
        "event_id": "e1",
        "ts": "2026-03-01T10:00:00.000Z",
        "user_id": "u1",
        "episode_id": "ep1",
        "event": "rate",
        "device": "ios",
        "rating": 4,
        "position_sec": 1.0,
        "from_sec": 0.0,
        "to_sec": 1.0,
        "played_pct": 0.5,
    }
    text = json.dumps(event)
    for name, raw in fields.items():
        text = text.replace(f'"{name}": {json.dumps(event[name])}', f'"{name}": {raw}')
    return text.encode()


NUMBERS_ORJSON_READS_OTHERWISE = [
    _event_with(position_sec="NaN"),
    _event_with(position_sec="1e400"),
    _event_with(position_sec="1" + "0" * 400),  # an integer no float holds: a dead letter, not a failed day
    _event_with(rating="1e400"),
    _event_with(rating="NaN"),
    _event_with(rating="123456789012345678901234567"),
    _event_with(user_id="123456789012345678901234567"),
    _event_with(user_id='"\\ud800"'),
    _event_with(to_sec="[123456789012345678901234567]"),
]


@FUZZ
@given(
    payloads.filter(lambda v: v is None or not 900 <= v.count(b"[") + v.count(b"{") <= 1100)
    | st.sampled_from(NUMBERS_ORJSON_READS_OTHERWISE)
)
def test_orjson_decoding_gives_what_json_decoding_gives(value):
    """The same event or the same dead-letter reason as the checks on json's reading (nesting of ~990-1024
    levels, which json cannot decode and orjson can, is left out)."""
    assert _outcome(parse_event, value) == _outcome(_parse_as_json_reads_it, value)


@pytest.mark.parametrize("depth", [990, 1000, 1020])
def test_a_field_nested_deeper_than_repr_can_print_is_a_dead_letter(depth):
    """orjson decodes 1,024 levels, more than Python's repr can print: the reason must not fail on it."""
    for field in ("position_sec", "rating"):
        with pytest.raises(InvalidEvent):
            parse_event(_event_with(**{field: "[" * depth + "]" * depth}))


def test_numbers_no_float_holds_are_dead_letters_with_a_reason():
    reasons = []
    for value in NUMBERS_ORJSON_READS_OTHERWISE:
        try:
            parse_event(value)
        except InvalidEvent as exc:
            reasons.append(str(exc).split(":", 1)[0])
    assert len(reasons) == len(NUMBERS_ORJSON_READS_OTHERWISE)
    assert set(reasons) == {"invalid_value", "wrong_type", "invalid_text"}


@FUZZ
@given(st.lists(payloads, min_size=1, max_size=12), st.data())
def test_split_day_accounts_for_every_record_and_never_raises(values, data):
    start = day_start_ms(DAY)
    timestamps = data.draw(
        st.lists(st.integers(start - 7_200_000, start + 90_000_000), min_size=len(values), max_size=len(values))
    )
    records = records_of(values, timestamps)
    split = split_day(
        "user-events",
        DAY,
        records,
        Catalog(frozenset({"ep1"})),
        {},
        {},
        timedelta(hours=1),
        datetime(2026, 6, 1, tzinfo=timezone.utc),
    )
    assert split.row_count + len(split.dead_letters) + split.other_days == len(records)
    for dead in split.dead_letters:
        assert dead["reason"] and dead["kafka_offset"] in {r.offset for r in records}
        assert dead["kafka_partition"] == dead["kafka_offset"] % 3


@FUZZ
@given(st.lists(payloads, min_size=1, max_size=12))
def test_episode_records_are_rows_or_dead_letters(values):
    ts = day_start_ms(DAY) + 3_600_000
    records = records_of(values, [ts] * len(values))
    rows, dead, duplicates = parse_episode_records(records, DAY)
    assert len(rows) + duplicates + len(dead) == len(records)
    assert all(d["reason"] and d["topic"] == "episode-metadata" for d in dead)


def test_a_lone_surrogate_escape_is_a_dead_letter_not_a_failed_day():
    """JSON may escape half of a surrogate pair; Python decodes it, but no UTF-8 writer (Delta, MongoDB) can store
    it: the message must be a dead letter, not a day that fails at write time."""
    import pytest

    from podrec_assets.core.schemas import EPISODES, to_table
    from podrec_assets.resources.kafka import KafkaRecord

    day = date(2026, 3, 3)
    episode = {
        "episode_id": "e1",
        "podcast_id": "p",
        "podcast_title": "Show \\ud800",
        "episode_title": "E",
        "audio_url": "https://x/a.mp3",
        "published_at": "2026-03-03T09:00:00Z",
        "source": "rss",
    }
    good = {**episode, "episode_id": "e2", "podcast_title": "Show \\ud83d\\ude00"}  # a whole pair is fine
    records = [
        KafkaRecord(
            0, n, day_start_ms(day) + 1000, e["episode_id"].encode(), json.dumps(e).replace("\\\\u", "\\u").encode()
        )
        for n, e in enumerate((episode, good))
    ]
    rows, dead, _ = parse_episode_records(records, day)
    assert [r["episode_id"] for r in rows] == ["e2"] and rows[0]["podcast_title"] == "Show \U0001f600"
    assert len(dead) == 1 and dead[0]["reason"].startswith("invalid_text")
    to_table(rows, EPISODES)  # what is left can be written
    event = {
        "event_id": "x",
        "ts": "2026-03-03T09:00:00Z",
        "user_id": "u\\udfff",
        "episode_id": "e2",
        "event": "play",
        "device": "web",
        "rating": None,
        "position_sec": 1,
        "from_sec": 0,
        "to_sec": 1,
        "played_pct": 0.1,
    }
    with pytest.raises(InvalidEvent, match="invalid_text: user_id"):
        parse_event(json.dumps(event).replace("\\\\u", "\\u").encode())
