"""Pure tests of event validation, the day split and the engagement SQL (DuckDB), no servers."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from podrec_assets.core import events
from podrec_assets.core.engagement import aggregate_duckdb, engagement_sql, weights_from_settings
from podrec_assets.core.events import Catalog, InvalidEvent, format_ts, parse_event, split_day
from podrec_assets.core.schemas import USER_EVENTS
from podrec_assets.settings import load_settings
from podrec_assets.sources.event_messages import SimulationStats, generate_day
from podrec_assets.sources.listening import Episode, ListeningModel

DAY = date(2026, 3, 1)
DAY_MS = int(datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp() * 1000)
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


@dataclass
class Rec:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


def event(**overrides) -> dict:
    base = {
        "event_id": "e1",
        "ts": format_ts(datetime(2026, 3, 1, 12, tzinfo=timezone.utc)),
        "user_id": "u1",
        "episode_id": "ep1",
        "event": "play",
        "device": "ios",
        "rating": None,
        "position_sec": 60.0,
        "from_sec": 0.0,
        "to_sec": 60.0,
        "played_pct": 0.5,
    }
    base.update(overrides)
    return base


def encode(payload: dict) -> bytes:
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    "value, reason",
    [
        (b'{"event_id": "e1", "ts":', "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b"[" * 100_000 + b"]" * 100_000, "invalid_json: RecursionError"),  # one poison message never fails a day
        (b'{"event_id": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, "invalid_json: RecursionError"),
        (encode({k: v for k, v in event().items() if k != "user_id"}), "missing_field: user_id"),
        (encode(event(event="rate", rating=None)), "missing_field: rating"),
        (encode(event(position_sec="60")), "wrong_type: position_sec"),
        (encode(event(user_id=7)), "wrong_type: user_id"),
        (encode(event(event="rate", rating="5")), "wrong_type: rating"),
        (encode(event(event="dance")), "invalid_value: event"),
        (encode(event(event="rate", rating=9)), "invalid_value: rating"),
        (encode(event(rating=4)), "invalid_value: rating"),
        (encode(event(from_sec=70.0)), "invalid_value: playback"),
        (encode(event(played_pct=1.5)), "invalid_value: played_pct"),
        (encode(event(ts="yesterday")), "invalid_value: ts"),
        (encode(event(ts="2026-03-01T12:00:00")), "invalid_value: ts"),
    ],
)
def test_parse_event_gives_a_specific_reason(value, reason):
    with pytest.raises(InvalidEvent) as caught:
        parse_event(value)
    assert str(caught.value).startswith(reason)


def test_parse_event_accepts_a_rating_only_on_rate():
    parsed = parse_event(encode(event(event="rate", rating=5)))
    assert parsed["rating"] == 5 and parsed["ts"] == datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    assert parse_event(encode(event()))["rating"] is None


def test_split_day_dedups_flags_future_unknown_and_too_late():
    noon = DAY_MS + 12 * 3_600_000
    records = [
        Rec(0, 10, noon, b"u1", encode(event(event_id="a"))),
        Rec(0, 11, noon + 5, b"u1", encode(event(event_id="a"))),  # re-send
        Rec(1, 3, noon, b"u2", encode(event(event_id="b", episode_id="nope"))),
        Rec(1, 4, noon, b"u2", encode(event(event_id="c", ts=format_ts(datetime(2027, 3, 1, tzinfo=timezone.utc))))),
        Rec(
            1, 5, DAY_MS - 1000, b"u2", encode(event(event_id="d", ts="2026-02-28T23:59:59.000Z"))
        ),  # too late for Feb 28
        Rec(1, 1, DAY_MS - 2000, b"u2", encode(event(event_id="e", ts="2026-02-28T23:59:58.000Z"))),  # read by Feb 28
        Rec(2, 7, DAY_MS + 86_400_000 + 10, b"u3", encode(event(event_id="f"))),  # next day's record
        Rec(2, 8, noon, b"u3", encode(event(event_id="g", ts="2026-02-28T23:00:00.000Z"))),  # payload on another day
    ]
    split = split_day(
        "user-events",
        DAY,
        records,
        Catalog(frozenset({"ep1"})),
        previous_day_stop={1: 5},
        midnight={},
        lateness=timedelta(hours=1),
        now=NOW,
    )
    assert split.table()["event_id"].to_pylist() == ["a"]
    assert split.table()["kafka_offset"].to_pylist() == [10]
    reasons = {(d["kafka_partition"], d["kafka_offset"]): d["reason"] for d in split.dead_letters}
    assert reasons[(0, 11)].startswith("duplicate_event_id: a first seen at partition 0 offset 10")
    assert reasons[(1, 3)].startswith("unknown_episode: 'nope'")
    assert reasons[(1, 4)].startswith("future_timestamp")
    assert reasons[(1, 5)].startswith("too_late: event of 2026-02-28")
    assert reasons[(2, 8)].startswith("timestamp_mismatch")
    assert (1, 1) not in reasons and (2, 7) not in reasons
    assert split.too_late == 1 and split.other_days == 2
    assert split.table().schema == USER_EVENTS


def test_split_day_is_independent_of_record_order_and_of_its_arrow_batches(monkeypatch):
    model = ListeningModel(
        [Episode(f"ep{i}", DAY_MS - 86_400_000, 600.0, (f"t{i % 3}",)) for i in range(12)], 200, 3, 3
    )
    stats = SimulationStats()
    messages = generate_day(model, DAY, 8, 3, 0.05, 0.0, timedelta(hours=1), stats, NOW.timestamp() * 1000)
    offsets: dict[int, int] = {}
    records = []
    for m in sorted(messages, key=lambda m: m.arrival_ms):
        offsets[m.partition] = offsets.get(m.partition, -1) + 1
        records.append(Rec(m.partition, offsets[m.partition], m.ts_ms, m.key, m.value))
    catalog = Catalog(frozenset(f"ep{i}" for i in range(12)))
    first = split_day("user-events", DAY, records, catalog, {}, {}, timedelta(hours=1), NOW)
    random.Random(1).shuffle(records)
    second = split_day("user-events", DAY, records, catalog, {}, {}, timedelta(hours=1), NOW)
    assert first.table().equals(second.table())
    monkeypatch.setattr(events, "SPLIT_BATCH_ROWS", 7)  # accepted rows move to Arrow every 7
    batched = split_day("user-events", DAY, records, catalog, {}, {}, timedelta(hours=1), NOW)
    assert len(batched.batches) > 3 and batched.row_count == first.row_count
    assert batched.table().equals(first.table()) and batched.dead_letters == second.dead_letters
    on_day = stats.valid_by_day[DAY.isoformat()]
    assert first.row_count == on_day  # nothing valid is lost
    kinds = {d["reason"].split(":")[0] for d in first.dead_letters}
    assert kinds == {
        "invalid_json",
        "missing_field",
        "wrong_type",
        "unknown_episode",
        "future_timestamp",
        "duplicate_event_id",
    }


def reference_engagement(rows: list[dict], w: dict[str, float]) -> dict[tuple[str, str], float]:
    """Obviously-right Python version of the weighting rules in core/engagement.py."""
    totals: dict[tuple[str, str], float] = {}
    for r in rows:
        kind = r["event"]
        if kind == "play":
            weight = (
                w["weight_play_high"]
                if r["played_pct"] > w["play_high_pct"]
                else w["weight_play_low"]
                if r["played_pct"] < w["play_low_pct"]
                else w["weight_play_mid"]
            )
        elif kind == "rate":
            weight = r["rating"] - 3
        else:
            weight = w[f"weight_{kind}"]
        key = (r["user_id"], r["episode_id"])
        totals[key] = totals.get(key, 0.0) + weight
    return totals


def test_engagement_sql_matches_the_reference_rules():
    w = weights_from_settings(load_settings({}))
    ts = datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
    rows = [
        {"user_id": "u1", "episode_id": "e1", "event": "play", "played_pct": 0.9, "rating": None, "ts": ts},
        {
            "user_id": "u1",
            "episode_id": "e1",
            "event": "complete",
            "played_pct": 1.0,
            "rating": None,
            "ts": ts + timedelta(minutes=1),
        },
        {"user_id": "u1", "episode_id": "e1", "event": "rate", "played_pct": 1.0, "rating": 1, "ts": ts},
        {"user_id": "u1", "episode_id": "e2", "event": "play", "played_pct": 0.1, "rating": None, "ts": ts},
        {"user_id": "u1", "episode_id": "e2", "event": "skip", "played_pct": 0.1, "rating": None, "ts": ts},
        {
            "user_id": "u2",
            "episode_id": "e1",
            "event": "play",
            "played_pct": 0.8,
            "rating": None,
            "ts": ts,
        },  # boundary: mid
        {
            "user_id": "u2",
            "episode_id": "e1",
            "event": "play",
            "played_pct": 0.2,
            "rating": None,
            "ts": ts,
        },  # boundary: mid
        {"user_id": "u2", "episode_id": "e1", "event": "pause", "played_pct": 0.2, "rating": None, "ts": ts},
        {"user_id": "u2", "episode_id": "e1", "event": "like", "played_pct": 0.2, "rating": None, "ts": ts},
    ]
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("user_id", pa.string()),
                ("episode_id", pa.string()),
                ("event", pa.string()),
                ("played_pct", pa.float64()),
                ("rating", pa.int32()),
                ("ts", pa.timestamp("us", tz="UTC")),
            ]
        ),
    )
    result = aggregate_duckdb(table, w).to_pylist()
    expected = reference_engagement(rows, w)
    assert [(r["user_id"], r["episode_id"]) for r in result] == sorted(expected)
    for r in result:
        assert r["engagement"] == pytest.approx(expected[(r["user_id"], r["episode_id"])], abs=1e-9)
    by_pair = {(r["user_id"], r["episode_id"]): r for r in result}
    assert by_pair[("u1", "e1")]["engagement"] == pytest.approx(3 + 3 - 2)
    assert by_pair[("u1", "e1")]["completed"] is True and by_pair[("u1", "e2")]["completed"] is False
    assert by_pair[("u2", "e1")]["event_count"] == 4 and by_pair[("u2", "e1")]["engagement"] == pytest.approx(
        1 + 1 + 0 + 2
    )
    assert by_pair[("u1", "e1")]["last_event_at"] == ts + timedelta(minutes=1)
    assert by_pair[("u1", "e2")]["max_played_pct"] == 0.1


def test_engagement_weights_come_from_settings():
    w = weights_from_settings(load_settings({"PODREC_WEIGHT_SKIP": "-1.5", "PODREC_PLAY_HIGH_PCT": "0.9"}))
    sql = engagement_sql(w)
    assert "CAST(-1.5 AS DECIMAL(18, 6))" in sql and "played_pct > 0.9" in sql


def test_mutated_messages_only_ever_raise_invalid_event():
    """Fuzz: byte flips, truncations and splices of a valid event give InvalidEvent or a parsed event, nothing else."""
    rng = random.Random(11)
    valid = encode(event())
    for _ in range(3000):
        value = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            kind = rng.random()
            position = rng.randrange(len(value)) if value else 0
            if kind < 0.4 and value:
                value[position] = rng.randrange(256)
            elif kind < 0.7:
                del value[position : position + rng.randint(1, 20)]
            else:
                value[position:position] = rng.choice(
                    [b"[", b"{", b'"', b"null", b"1e999", b"\\u0000", b"-", b"{}"]
                ) * rng.randint(1, 50)
        try:
            parsed = parse_event(bytes(value))
        except InvalidEvent:
            continue
        assert isinstance(parsed, dict) and isinstance(parsed["user_id"], str)
