"""Validation of `user-events` messages and the split of one day's Kafka range (pure: no I/O, no Dagster).

A message becomes a `user_events` row only when every rule below holds; otherwise it becomes a dead
letter whose reason starts with the rule's name (the text after ':' says what was wrong):

- ``invalid_json``: not UTF-8 JSON, or not a JSON object.
- ``missing_field: <name>``: a contract field is absent (``rating`` may be null, except on ``rate``,
  where a null rating is ``missing_field: rating``).
- ``wrong_type: <name> ...``: e.g. a string where a number is expected.
- ``invalid_value: <name> ...``: unknown event type, rating outside 1-5 or on another event, a rating
  that is not a whole number, an unparseable ``ts``, negative or inconsistent playback fields
  (from_sec <= to_sec, played_pct in [0, 1]).
- ``future_timestamp: ...``: the payload's ``ts`` is more than ``future_tolerance`` after the Kafka
  record's timestamp (the time the producer sent it), or after ``now``.
- ``timestamp_mismatch: ...``: the payload's ``ts`` is on another day than the record's timestamp.
- ``unknown_episode: <id>``: the episode is not in the catalog known for the day (see ``Catalog``).
- ``duplicate_event_id: <id> ...``: an earlier message of the day (lower partition/offset) already
  carried this event_id; the first one wins, so a re-read gives the same row.
- ``too_late: ...``: an event of an earlier day that arrived after that day's range had closed
  (day end + allowed lateness). It is kept here, in the dead letters of the day it arrived, and
  counted in the metadata, instead of silently vanishing.

Duplicates are detected within one day's range: the simulator's (and a retrying producer's)
duplicates repeat the original ``ts``, so original and copy always fall on the same day.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Protocol

import orjson
import pyarrow as pa

from podrec_assets.core.days import day_bounds_ms, day_of_ms
from podrec_assets.core.dead_letters import dead_letter
from podrec_assets.core.schemas import USER_EVENTS

EVENT_TYPES = ("play", "pause", "like", "skip", "rate", "complete")
TEXT_FIELDS = ("event_id", "ts", "user_id", "episode_id", "event", "device")
NUMBER_FIELDS = ("position_sec", "from_sec", "to_sec", "played_pct")
REQUIRED_FIELDS = TEXT_FIELDS + ("rating",) + NUMBER_FIELDS
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class KafkaLikeRecord(Protocol):
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


class InvalidEvent(ValueError):
    """A message that breaks a rule; ``str()`` is the dead-letter reason."""


@dataclass
class Catalog:
    """Episodes an event of the day may refer to: published (known to the catalog) by the day's end.

    Built by the asset from the Delta ``episodes`` table (every day up to the event's day) united with
    the ``episode-metadata`` topic (messages whose ``published_at`` is before the day's end plus the
    lateness), so an event is never rejected just because ``episodes`` for its day was not
    materialized yet.
    """

    episode_ids: frozenset[str]

    def __contains__(self, episode_id: str) -> bool:
        return episode_id in self.episode_ids


def parse_ts(text: str) -> datetime:
    """ISO-8601 with a zone (``Z`` accepted) to an aware UTC datetime."""
    value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if value.tzinfo is None:
        raise ValueError("no time zone")
    return value.astimezone(timezone.utc)


def format_ts(value: datetime) -> str:
    """The wire format of ``ts``: UTC, milliseconds, ``Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _finite(value: int | float) -> bool:
    """A number a float column can hold (an integer of 400 digits is not: it overflows a float)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _quoted(value: Any, width: int) -> str:
    """The start of ``repr(value)`` for a reason; a value nested too deep to print (orjson decodes 1,024 levels,
    deeper than Python's repr can go) is named by its type."""
    try:
        return f"{value!r:.{width}}"
    except RecursionError:
        return f"<{type(value).__name__} nested too deep to print>"


def _number(payload: dict, name: str) -> float:
    value = payload[name]
    if type(value) not in (int, float):  # bool is not a number here
        raise InvalidEvent(f"wrong_type: {name} must be a number, got {type(value).__name__} {_quoted(value, 40)}")
    if not _finite(value):
        raise InvalidEvent(f"invalid_value: {name} is {value!s:.40}")
    return float(value)


def utf8_encodable(text: str) -> bool:
    """JSON may escape a lone surrogate (\\ud800): Python decodes it, but no UTF-8 writer can store it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_payload(value: bytes) -> Any:
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nesting too deep to decode
        raise InvalidEvent(f"invalid_json: {type(exc).__name__}: {str(exc)[:200]}") from None


def parse_event(value: bytes | None) -> dict[str, Any]:
    """Decode and check one message's payload; returns the typed fields or raises ``InvalidEvent``.

    Decoded by orjson (~5x faster than ``json``): it refuses NaN, 1e400 and lone surrogate escapes, and reads an
    integer beyond 64 bits as a float, none of which a valid event holds, so a message it accepts is valid exactly
    when ``json``'s reading is. Any message orjson refuses, or that breaks a rule, is checked again as ``json``
    reads it, so a dead letter's reason is ``json``'s. (Only nesting of ~1,000-1,024 levels, which ``json`` cannot
    decode, can pass here.)"""
    if value is None:
        raise InvalidEvent("invalid_json: expected an object, got NoneType")
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError:
        return _checked(_json_payload(value), text_checked=False)
    try:
        return _checked(payload, text_checked=True)
    except (InvalidEvent, RecursionError):
        return _checked(_json_payload(value), text_checked=False)


def _checked(payload: Any, text_checked: bool) -> dict[str, Any]:
    """The typed fields of a decoded payload, or ``InvalidEvent``; ``text_checked``: its strings are known to be
    UTF-8 encodable (orjson refuses lone surrogates)."""
    if not isinstance(payload, dict):
        raise InvalidEvent(f"invalid_json: expected an object, got {type(payload).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in payload:
            raise InvalidEvent(f"missing_field: {name}")
    for name in TEXT_FIELDS:
        if not isinstance(payload[name], str):
            raise InvalidEvent(f"wrong_type: {name} must be a string, got {type(payload[name]).__name__}")
        if not payload[name]:
            raise InvalidEvent(f"missing_field: {name} (empty)")
        if not text_checked and not utf8_encodable(payload[name]):
            raise InvalidEvent(f"invalid_text: {name} holds a lone surrogate escape (not encodable as UTF-8)")
    event = payload["event"]
    if event not in EVENT_TYPES:
        raise InvalidEvent(f"invalid_value: event {event!r:.40} is not one of {', '.join(EVENT_TYPES)}")
    try:
        ts = parse_ts(payload["ts"])
    except ValueError:
        raise InvalidEvent(f"invalid_value: ts {payload['ts']!r:.40} is not ISO-8601 with a time zone") from None
    position, from_sec, to_sec, played = (_number(payload, n) for n in NUMBER_FIELDS)
    rating = payload["rating"]
    if event == "rate":
        if rating is None:
            raise InvalidEvent("missing_field: rating")
        if type(rating) not in (int, float):
            kind = type(rating).__name__
            raise InvalidEvent(f"wrong_type: rating must be a number, got {kind} {_quoted(rating, 40)}")
        if not _finite(rating) or rating != int(rating) or not 1 <= rating <= 5:
            raise InvalidEvent(f"invalid_value: rating {rating!s:.40} is not a whole number 1-5")
        rating = int(rating)
    elif rating is not None:
        raise InvalidEvent(f"invalid_value: rating {_quoted(rating, 20)} on a {event} event (ratings only on rate)")
    if min(position, from_sec, to_sec) < 0 or from_sec > to_sec:
        raise InvalidEvent(f"invalid_value: playback from_sec={from_sec} to_sec={to_sec} position_sec={position}")
    if not 0.0 <= played <= 1.0:
        raise InvalidEvent(f"invalid_value: played_pct {played} is outside [0, 1]")
    return {
        "event_id": payload["event_id"],
        "ts": ts,
        "user_id": payload["user_id"],
        "episode_id": payload["episode_id"],
        "event": event,
        "device": payload["device"],
        "rating": rating,
        "position_sec": position,
        "from_sec": from_sec,
        "to_sec": to_sec,
        "played_pct": played,
    }


@dataclass
class DaySplit:
    """What one day's Kafka range became."""

    rows: dict[str, list]  # USER_EVENTS columns of the rows not yet in ``batches``
    dead_letters: list[dict[str, Any]]
    late_accepted: int = 0  # events of the day that arrived after midnight, within the lateness
    too_late: int = 0  # events of earlier days that arrived after their day closed (dead-lettered here)
    other_days: int = 0  # records of other days read because the ranges overlap (handled by their own day)
    reasons: dict[str, int] = field(default_factory=dict)
    batches: list[pa.RecordBatch] = field(default_factory=list)  # the rows before them, as Arrow

    @property
    def row_count(self) -> int:
        return sum(batch.num_rows for batch in self.batches) + len(self.rows["event_id"])

    def table(self) -> pa.Table:
        pending = pa.RecordBatch.from_pydict(self.rows, schema=USER_EVENTS)
        return pa.Table.from_batches([*self.batches, pending], schema=USER_EVENTS)


# accepted rows kept as Python values before they move to an Arrow batch: a million listeners' day is millions of
# rows, which as Python objects alone would take several GB
SPLIT_BATCH_ROWS = 200_000


def split_day(
    topic: str,
    day: date,
    records: Iterable[KafkaLikeRecord],
    catalog: Catalog,
    previous_day_stop: dict[int, int],
    midnight: dict[int, int],
    lateness: timedelta,
    now: datetime,
    future_tolerance: timedelta = timedelta(minutes=5),
) -> DaySplit:
    """Validate the records of one day's offset range and keep the day's events, first event_id wins.

    ``previous_day_stop``: per partition, the first offset past the previous day's range; a record of an
    earlier day at or beyond it arrived too late for its day and is dead-lettered here (exactly one day's
    range sees each such offset, so it is counted once). ``midnight``: per partition, the first offset
    stamped on the next day; the day's records at or beyond it arrived late but within the lateness.
    """
    start_ms, end_ms, _ = day_bounds_ms(day)
    rows: dict[str, list] = {name: [] for name in USER_EVENTS.names}
    batches: list[pa.RecordBatch] = []
    dead: list[dict[str, Any]] = []
    seen: dict[str, tuple[int, int]] = {}
    late_accepted = too_late = other_days = 0
    now_ms = int(now.timestamp() * 1000)
    tolerance_ms = int(future_tolerance.total_seconds() * 1000)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        ts_ms = record.timestamp_ms
        if ts_ms < start_ms:
            if record.offset >= previous_day_stop.get(record.partition, 0):
                too_late += 1
                event_day = day_of_ms(ts_ms)
                dead.append(
                    dead_letter(
                        topic,
                        record.partition,
                        record.offset,
                        ts_ms,
                        record.key,
                        record.value,
                        f"too_late: event of {event_day} arrived after that day closed (allowed lateness {lateness})",
                    )
                )
            else:
                other_days += 1
            continue
        if ts_ms >= end_ms:
            other_days += 1
            continue
        try:
            event = parse_event(record.value)
            event_ms = int(event["ts"].timestamp() * 1000)
            if event_ms > ts_ms + tolerance_ms or event_ms > now_ms + tolerance_ms:
                raise InvalidEvent(
                    f"future_timestamp: ts {format_ts(event['ts'])} is after the record time "
                    f"{format_ts(EPOCH + timedelta(milliseconds=ts_ms))} / now {format_ts(now)}"
                )
            if not start_ms <= event_ms < end_ms:
                raise InvalidEvent(f"timestamp_mismatch: ts {format_ts(event['ts'])} is not on the record's day {day}")
            if event["episode_id"] not in catalog:
                raise InvalidEvent(f"unknown_episode: {event['episode_id']!r:.80} is not in the catalog as of {day}")
            first = seen.get(event["event_id"])
            if first is not None:
                raise InvalidEvent(
                    f"duplicate_event_id: {event['event_id']} first seen at partition {first[0]} offset {first[1]}"
                )
        except InvalidEvent as exc:
            dead.append(dead_letter(topic, record.partition, record.offset, ts_ms, record.key, record.value, str(exc)))
            continue
        seen[event["event_id"]] = (record.partition, record.offset)
        if record.offset >= midnight.get(record.partition, 1 << 62):
            late_accepted += 1
        for name, value in event.items():
            rows[name].append(value)
        rows["kafka_partition"].append(record.partition)
        rows["kafka_offset"].append(record.offset)
        if len(rows["kafka_offset"]) >= SPLIT_BATCH_ROWS:
            batches.append(pa.RecordBatch.from_pydict(rows, schema=USER_EVENTS))
            rows = {name: [] for name in USER_EVENTS.names}
    reasons: dict[str, int] = {}
    for row in dead:
        kind = row["reason"].split(":", 1)[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    return DaySplit(rows, dead, late_accepted, too_late, other_days, dict(sorted(reasons.items())), batches)
