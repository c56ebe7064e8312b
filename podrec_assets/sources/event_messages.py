"""The simulator's messages: a day of listens as `user-events` wire messages (valid, late and malformed), in
arrival order, deterministic by (seed, day)."""

from __future__ import annotations

import bisect
import json
import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

from podrec_assets.core.events import format_ts
from podrec_assets.sources.listening import ACTIVE_SHARE, DAY_MS, ListeningModel, User

MALFORMED_KINDS = (
    "invalid_json",
    "missing_field",
    "wrong_type",
    "unknown_episode",
    "future_timestamp",
    "duplicate_event_id",
)


@dataclass(slots=True)
class Outgoing:
    """One message to send: arrival decides the send order, ts_ms is the record timestamp."""

    arrival_ms: int
    ts_ms: int
    key: bytes
    value: bytes
    partition: int
    event_day: date | None = None


@dataclass
class SimulationStats:
    valid_by_day: dict[str, int] = field(default_factory=dict)
    malformed: dict[str, int] = field(default_factory=lambda: {k: 0 for k in MALFORMED_KINDS})
    late_within: dict[str, int] = field(default_factory=dict)
    late_beyond: dict[str, int] = field(default_factory=dict)
    messages: int = 0


_TS_PREFIX: dict[int, str] = {}


def _ts_text(ts_ms: int) -> str:
    """Fast ``format_ts`` for epoch milliseconds (the generator's hot path)."""
    day, in_day = divmod(ts_ms, DAY_MS)
    prefix = _TS_PREFIX.get(day)
    if prefix is None:
        prefix = _TS_PREFIX[day] = (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=day)).strftime(
            "%Y-%m-%dT"
        )
    seconds, ms = divmod(in_day, 1000)
    minutes, s = divmod(seconds, 60)
    h, m = divmod(minutes, 60)
    return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z"


def uuid4_of(rng: random.Random) -> str:
    """A version-4 UUID from the seeded generator (deterministic), formatted without the uuid module."""
    bits = (rng.getrandbits(128) & ~(0xF << 76) & ~(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
    h = "%032x" % bits
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_payload(
    event_id: str, user: User, episode_id: str, event: dict[str, Any], ts_text: str | None = None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "ts": ts_text or _ts_text(event["ts"]),
        "user_id": user.user_id,
        "episode_id": episode_id,
        "event": event["event"],
        "device": event["device"],
        "rating": event["rating"],
        "position_sec": event["position_sec"],
        "from_sec": event["from_sec"],
        "to_sec": event["to_sec"],
        "played_pct": event["played_pct"],
    }


_encoder = json.JSONEncoder(separators=(",", ":"))


def encode(payload: dict[str, Any]) -> bytes:
    return _encoder.encode(payload).encode()


def _malformed(rng: random.Random, kind: str, original: dict[str, Any], out: Outgoing) -> Outgoing:
    """A broken message derived from a valid one (new event_id unless it is the duplicate)."""
    payload = dict(original)
    if kind == "duplicate_event_id":
        return Outgoing(out.arrival_ms + rng.randint(1, 5000), out.ts_ms, out.key, out.value, out.partition)
    payload["event_id"] = uuid4_of(rng)
    if kind == "invalid_json":
        text = encode(payload)
        value = text[: rng.randint(5, len(text) - 5)]
    elif kind == "missing_field":
        name = (
            "rating"
            if payload["event"] == "rate"
            else rng.choice(["ts", "user_id", "episode_id", "event", "played_pct"])
        )
        payload.pop(name)
        value = encode(payload)
    elif kind == "wrong_type":
        payload["position_sec"] = str(payload["position_sec"])
        value = encode(payload)
    elif kind == "unknown_episode":
        payload["episode_id"] = f"unknown-{rng.getrandbits(40):010x}"
        value = encode(payload)
    elif kind == "future_timestamp":
        payload["ts"] = format_ts(datetime.fromtimestamp(out.ts_ms / 1000, timezone.utc) + timedelta(days=365))
        value = encode(payload)
    else:
        raise ValueError(kind)
    return Outgoing(out.arrival_ms + rng.randint(1, 5000), out.ts_ms, out.key, value, out.partition)


def generate_day(
    model: ListeningModel,
    day: date,
    events_per_user_day: float,
    seed: int,
    malformed_share: float,
    late_share: float,
    lateness: timedelta,
    stats: SimulationStats,
    now_ms: int,
) -> list[Outgoing]:
    """Every message (valid, late and malformed) of one simulated day, deterministic by (seed, day)."""
    rng = random.Random(f"podrec-sim-{seed}-{day.isoformat()}")
    day_ms = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    next_day_ms = day_ms + DAY_MS
    lateness_ms = int(lateness.total_seconds() * 1000)
    out: list[Outgoing] = []
    for user in model.users:
        if rng.random() >= ACTIVE_SHARE:
            continue
        lam = events_per_user_day * user.activity
        budget = _poisson(rng, lam)
        if budget == 0:
            continue
        for episode, event in model.user_day(rng, user, day_ms, budget):
            ts = event["ts"]
            if ts > now_ms:
                continue
            event_id = uuid4_of(rng)
            rating = event["rating"]
            value = (
                f'{{"event_id":"{event_id}","ts":"{_ts_text(ts)}","user_id":"{user.user_id}",'
                f'"episode_id":{model.episode_json(episode)},"event":"{event["event"]}","device":"{event["device"]}",'
                f'"rating":{"null" if rating is None else rating},"position_sec":{event["position_sec"]!r},'
                f'"from_sec":{event["from_sec"]!r},"to_sec":{event["to_sec"]!r},"played_pct":{event["played_pct"]!r}}}'
            )
            event_day = day if day_ms <= ts < next_day_ms else datetime.fromtimestamp(ts / 1000, timezone.utc).date()
            arrival = ts
            if late_share and rng.random() < late_share:
                if rng.random() < 0.5:
                    arrival = max(ts, next_day_ms + int(lateness_ms * rng.uniform(0.05, 0.9)))
                    bucket = stats.late_within
                else:
                    arrival = max(ts, next_day_ms + lateness_ms + rng.randint(300_000, 3 * 3_600_000))
                    bucket = stats.late_beyond
                if event_day == day:
                    bucket[day.isoformat()] = bucket.get(day.isoformat(), 0) + 1
            out.append(Outgoing(arrival, ts, user.key, value.encode(), user.partition, event_day))
    for message in out:
        key = message.event_day.isoformat()
        stats.valid_by_day[key] = stats.valid_by_day.get(key, 0) + 1
    if malformed_share > 0 and out:
        count = int(len(out) * malformed_share)
        count += rng.random() < len(out) * malformed_share - count
        for number in range(count):
            kind = MALFORMED_KINDS[number % len(MALFORMED_KINDS)]
            index = rng.randrange(len(out))
            if out[index].arrival_ms != out[index].ts_ms:
                continue  # derive malformed messages only from on-time events
            # the payload read back from the message itself: no event kept per message (a 1M-listener day is
            # millions of them), and the same dict the event had (same keys, order and values)
            out.append(_malformed(rng, kind, json.loads(out[index].value), out[index]))
            stats.malformed[kind] += 1
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def ordered_messages(
    model: ListeningModel,
    days: list[date],
    events_per_user_day: float,
    seed: int,
    malformed_share: float,
    late_share: float,
    lateness: timedelta,
    now_ms: int,
    stats: SimulationStats,
    chunk: int = 20000,
) -> Iterator[list[tuple[int, bytes, bytes, int]]]:
    """(timestamp_ms, key, value, partition) chunks in arrival order; late ones carried into the next day."""
    pending: list[Outgoing] = []
    ordered = sorted(days)
    for number, day in enumerate(ordered):
        messages = pending + generate_day(
            model, day, events_per_user_day, seed, malformed_share, late_share, lateness, stats, now_ms
        )
        messages.sort(key=lambda m: m.arrival_ms)
        if number == len(ordered) - 1:
            send, pending = messages, []
        else:
            following = ordered[number + 1]
            cutoff = int(
                datetime(following.year, following.month, following.day, tzinfo=timezone.utc).timestamp() * 1000
            )
            split = bisect.bisect_left([m.arrival_ms for m in messages], cutoff)
            send, pending = messages[:split], messages[split:]
        for start in range(0, len(send), chunk):
            yield [(m.ts_ms, m.key, m.value, m.partition) for m in send[start : start + chunk]]
