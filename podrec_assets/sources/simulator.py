"""The listening simulator: users with latent topic tastes produce `user-events` (history or live).

Model (deterministic by seed):

- The catalog is read from the `episode-metadata` topic (latest message per episode_id); an episode is
  listenable only from its ``published_at``; its ``categories`` are its topics.
- Each user likes 1 or 2 topics (weights 1.0, or 0.6/0.4), written to the Delta table
  ``simulated_user_tastes`` (user_id, topic, weight), replaced whole by every run; that is the ground
  truth an evaluation can compare recommendations with.
- Choice of episode: with probability ``TASTE_LOYALTY`` (0.8) from the user's liked topics, else from the
  whole catalog; within that, by popularity (Zipf over a seeded ranking) boosted for episodes published
  in the last 3 days.
- A user is active on a day with probability 0.6; an active user's event budget is Poisson(K x activity),
  where activity is a per-user log-normal factor with mean 1 and K = ``events_per_user_day``. The budget
  is spread over 1-3 sessions at diurnal times, each on one of the user's devices.
- One listen: ``play`` events close listening segments (from_sec -> to_sec, played_pct = to_sec /
  duration), a ``pause`` may split the listen, and it ends with ``complete`` (reached the end), ``skip``
  (abandoned early) or nothing; ``like`` and ``rate`` (rating 1-5; the only event with a rating) follow
  with probabilities that depend on whether the topic is liked. Liked topics are mostly completed,
  others mostly skipped, so behaviour and content agree.
- Late arrivals: a share ``late_share`` of events arrives after their day ended, half within the allowed
  lateness and half beyond it. Messages are produced in arrival order with the Kafka record timestamp
  set to the event time (the `user-events` contract, README).
- Malformed messages, ``malformed_share`` of the valid ones, spread evenly over the kinds
  ``invalid_json``, ``missing_field``, ``wrong_type``, ``unknown_episode``, ``future_timestamp`` (payload
  ts a year ahead; the record timestamp stays the send time, as a producer's clock would stamp it) and
  ``duplicate_event_id`` (an exact re-send of an earlier event).

Throughput (``bench/events.py``: ~31k events/s on 2 cores): each user's partition is fixed once (crc32 of
the key: one user's events stay in order on one partition), messages are formatted without building dicts,
generation runs in a forked child while this process produces, and the producer is librdkafka's
(``KafkaResource.producer``): kafka-python's Python send path alone capped the simulator near 13k/s.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import sys
import time
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

import pyarrow as pa

from podrec_assets.core.events import format_ts, parse_ts
from podrec_assets.core.registry import EPISODE_METADATA_TOPIC, TASTES_TABLE, USER_EVENTS_TOPIC

TASTE_LOYALTY = 0.8
ACTIVE_SHARE = 0.6
DEVICES = ("ios", "android", "web", "smart_speaker", "car")
DIURNAL = [
    1,
    0.6,
    0.4,
    0.3,
    0.3,
    0.6,
    2,
    4,
    5,
    3,
    2,
    2,
    3,
    2,
    2,
    2,
    3,
    5,
    5,
    4,
    4,
    4,
    3,
    2,
]  # listens per hour (relative)
MALFORMED_KINDS = (
    "invalid_json",
    "missing_field",
    "wrong_type",
    "unknown_episode",
    "future_timestamp",
    "duplicate_event_id",
)
DAY_MS = 86_400_000


@dataclass
class Episode:
    episode_id: str
    published_ms: int
    duration_sec: float
    topics: tuple[str, ...]


@dataclass
class User:
    user_id: str
    tastes: dict[str, float]
    activity: float
    devices: tuple[str, ...]
    key: bytes = b""
    partition: int = 0


@dataclass
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


# --- catalog --------------------------------------------------------------------------------------


def catalog_from_messages(values: list[bytes | None]) -> dict[str, dict[str, Any]]:
    """episode_id -> the latest decodable `episode-metadata` message for it (messages in offset order)."""
    catalog: dict[str, dict[str, Any]] = {}
    for value in values:
        try:
            payload = json.loads(value) if value else None
        except ValueError:
            continue
        if isinstance(payload, dict) and isinstance(payload.get("episode_id"), str):
            catalog[payload["episode_id"]] = payload
    return catalog


def read_catalog(kafka) -> list[Episode]:
    """The listenable catalog from the `episode-metadata` topic (messages that lack published_at are ignored)."""
    ends = kafka.end_offsets(EPISODE_METADATA_TOPIC)
    records = kafka.read_range(EPISODE_METADATA_TOPIC, {p: (0, end) for p, end in ends.items()})
    records.sort(key=lambda r: (r.partition, r.offset))
    episodes = []
    for episode_id, payload in sorted(catalog_from_messages([r.value for r in records]).items()):
        try:
            published = parse_ts(str(payload["published_at"]))
        except (KeyError, ValueError):
            continue
        duration = payload.get("duration_sec")
        duration = float(duration) if isinstance(duration, (int, float)) and duration > 0 else 1800.0
        topics = tuple(c for c in (payload.get("categories") or []) if isinstance(c, str) and c) or (
            str(payload.get("podcast_title") or "general"),
        )
        episodes.append(Episode(episode_id, int(published.timestamp() * 1000), duration, topics))
    episodes.sort(key=lambda e: (e.published_ms, e.episode_id))
    return episodes


# --- the model ------------------------------------------------------------------------------------


class ListeningModel:
    """Users, tastes and popularity for one seed; generates the events of a user's day."""

    def __init__(self, episodes: list[Episode], users: int, seed: int, partitions: int):
        if not episodes:
            raise ValueError(
                f"the {EPISODE_METADATA_TOPIC} topic has no episodes: publish a catalog first "
                "(`podrec produce demo` or the demo) before simulating events"
            )
        rng = random.Random(f"podrec-sim-{seed}")
        self.episodes = episodes
        self.published = [e.published_ms for e in episodes]
        self.topics = sorted({t for e in episodes for t in e.topics})
        ranking = list(range(len(episodes)))
        rng.shuffle(ranking)
        self.popularity = [0.0] * len(episodes)
        for rank, index in enumerate(ranking):
            self.popularity[index] = 1.0 / (rank + 1) ** 0.8
        self.users = []
        for number in range(users):
            liked = rng.sample(self.topics, min(len(self.topics), 1 if rng.random() < 0.5 else 2))
            tastes = {liked[0]: 1.0} if len(liked) == 1 else {liked[0]: 0.6, liked[1]: 0.4}
            activity = math.exp(rng.gauss(-0.18, 0.6))  # log-normal, mean ~1
            devices = tuple(rng.sample(DEVICES, 1 if rng.random() < 0.6 else 2))
            user = User(f"u{number:06d}", tastes, activity, devices)
            user.key = user.user_id.encode()
            user.partition = zlib.crc32(user.key) % partitions
            self.users.append(user)
        self._pools: dict[tuple, tuple[list[int], list[float]]] = {}
        self._episode_json = {e.episode_id: json.dumps(e.episode_id) for e in episodes}

    def episode_json(self, episode: Episode) -> str:
        return self._episode_json[episode.episode_id]

    def tastes_table(self) -> pa.Table:
        rows = [(u.user_id, topic, weight) for u in self.users for topic, weight in sorted(u.tastes.items())]
        return pa.table(
            {
                "user_id": [r[0] for r in rows],
                "topic": [r[1] for r in rows],
                "weight": pa.array([r[2] for r in rows], pa.float64()),
            }
        )

    def _pool(self, available: int, day_ms: int, topic: str | None) -> tuple[list[int], list[float]]:
        key = (available, day_ms, topic)
        pool = self._pools.get(key)
        if pool is None:
            indices, cumulative, total = [], [], 0.0
            for i in range(available):
                episode = self.episodes[i]
                if topic is not None and topic not in episode.topics:
                    continue
                fresh = 3.0 if day_ms - episode.published_ms < 3 * DAY_MS else 1.0
                total += self.popularity[i] * fresh
                indices.append(i)
                cumulative.append(total)
            pool = self._pools[key] = (indices, cumulative)
        return pool

    def pick(self, rng: random.Random, user: User, at_ms: int, day_ms: int) -> Episode | None:
        available = bisect.bisect_right(self.published, at_ms)
        if available == 0:
            return None
        topic = None
        if rng.random() < TASTE_LOYALTY:
            r, acc = rng.random(), 0.0
            for topic, weight in user.tastes.items():  # noqa: B007 - the topic the loop stops at is the pick
                acc += weight
                if r < acc:
                    break
        indices, cumulative = self._pool(available, day_ms, topic)
        if not indices:
            indices, cumulative = self._pool(available, day_ms, None)
        position = bisect.bisect_left(cumulative, rng.random() * cumulative[-1])
        return self.episodes[indices[min(position, len(indices) - 1)]]

    @staticmethod
    def listen(rng: random.Random, user: User, episode: Episode, start_ms: int, device: str) -> list[dict[str, Any]]:
        """The events of one listen, in time order (dicts in the wire contract, ts as epoch ms)."""
        d = episode.duration_sec
        liked = any(t in user.tastes for t in episode.topics)
        skip = False
        if liked:
            fraction = 1.0 if rng.random() < 0.6 else rng.uniform(0.3, 0.95)
        elif rng.random() < 0.6:
            fraction, skip = rng.uniform(0.02, 0.15), True
        else:
            fraction = 1.0 if rng.random() < 0.1 else rng.uniform(0.1, 0.6)
        end = round(d * fraction, 1)
        events: list[dict[str, Any]] = []
        now = start_ms

        def add(kind: str, from_sec: float, to_sec: float, rating: int | None = None) -> None:
            events.append(
                {
                    "event": kind,
                    "ts": now,
                    "from_sec": from_sec,
                    "to_sec": to_sec,
                    "position_sec": to_sec,
                    "played_pct": round(min(1.0, to_sec / d), 4),
                    "rating": rating,
                    "device": device,
                }
            )

        segments = [(0.0, end)]
        if not skip and rng.random() < 0.35 and end > 2:
            cut = round(end * rng.uniform(0.2, 0.8), 1)
            segments = [(0.0, cut), (cut, end)]
        for number, (a, b) in enumerate(segments):
            now += int((b - a) * 1000)
            add("play", a, b)
            if number < len(segments) - 1:
                now += 500
                add("pause", b, b)
                now += rng.randint(60_000, 1_800_000)
        if fraction >= 1.0:
            add("complete", d, d)
        elif skip:
            now += 200
            add("skip", end, end)
        if rng.random() < (0.35 if liked else 0.03):
            now += rng.randint(1000, 20_000)
            add("like", end, end)
        if rng.random() < (0.15 if liked else 0.06):
            now += rng.randint(1000, 30_000)
            rating = rng.choices((3, 4, 5), (1, 5, 4))[0] if liked else rng.choices((1, 2, 3), (4, 4, 2))[0]
            add("rate", end, end, rating)
        return events

    def user_day(self, rng: random.Random, user: User, day_ms: int, budget: int) -> Iterator[tuple[Episode, dict]]:
        """Sessions of one user on one day until ``budget`` events are spent."""
        sessions = min(3, 1 + (rng.random() < 0.4) + (rng.random() < 0.15))
        per_session = max(1, math.ceil(budget / sessions))
        spent = 0
        for _ in range(sessions):
            hour = rng.choices(range(24), DIURNAL)[0]
            at = day_ms + hour * 3_600_000 + rng.randint(0, 3_599_999)
            device = rng.choice(user.devices)
            in_session = 0
            while in_session < per_session and spent < budget:
                episode = self.pick(rng, user, at, day_ms)
                if episode is None:
                    break
                events = self.listen(rng, user, episode, at, device)
                for event in events:
                    yield episode, event
                in_session += len(events)
                spent += len(events)
                at = events[-1]["ts"] + rng.randint(5_000, 120_000)


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


def _uuid4(rng: random.Random) -> str:
    """A version-4 UUID from the seeded generator (deterministic), formatted without the uuid module."""
    bits = (rng.getrandbits(128) & ~(0xF << 76) & ~(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
    h = "%032x" % bits
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _payload(
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


def _encode(payload: dict[str, Any]) -> bytes:
    return _encoder.encode(payload).encode()


def _malformed(rng: random.Random, kind: str, original: dict[str, Any], out: Outgoing) -> Outgoing:
    """A broken message derived from a valid one (new event_id unless it is the duplicate)."""
    payload = dict(original)
    if kind == "duplicate_event_id":
        return Outgoing(out.arrival_ms + rng.randint(1, 5000), out.ts_ms, out.key, out.value, out.partition)
    payload["event_id"] = _uuid4(rng)
    if kind == "invalid_json":
        text = _encode(payload)
        value = text[: rng.randint(5, len(text) - 5)]
    elif kind == "missing_field":
        name = (
            "rating"
            if payload["event"] == "rate"
            else rng.choice(["ts", "user_id", "episode_id", "event", "played_pct"])
        )
        payload.pop(name)
        value = _encode(payload)
    elif kind == "wrong_type":
        payload["position_sec"] = str(payload["position_sec"])
        value = _encode(payload)
    elif kind == "unknown_episode":
        payload["episode_id"] = f"unknown-{rng.getrandbits(40):010x}"
        value = _encode(payload)
    elif kind == "future_timestamp":
        payload["ts"] = format_ts(datetime.fromtimestamp(out.ts_ms / 1000, timezone.utc) + timedelta(days=365))
        value = _encode(payload)
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
    sources: list[tuple[str, User, str, dict[str, Any]]] = []  # to rebuild a payload for a malformed copy
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
            event_id = _uuid4(rng)
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
            sources.append((event_id, user, episode.episode_id, event))
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
            out.append(_malformed(rng, kind, _payload(*sources[index]), out[index]))
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


# --- producing ------------------------------------------------------------------------------------


def _producer(kafka):
    return kafka.producer(acks="1", linger_ms=50)


def _write_tastes(lake, table: pa.Table) -> str:
    from deltalake import write_deltalake

    uri = lake.table_uri(TASTES_TABLE)
    write_deltalake(uri, table, mode="overwrite", schema_mode="overwrite", storage_options=lake.storage_options)
    return uri


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


def _generate_in_child(
    connection, model, seed, days, events_per_user_day, malformed_share, late_share, lateness, now_ms
) -> None:
    """Forked child (inherits ``model``): generate and send chunks over ``connection``, overlapping the producer."""
    try:
        stats = SimulationStats()
        for chunk in ordered_messages(
            model, days, events_per_user_day, seed, malformed_share, late_share, lateness, now_ms, stats
        ):
            connection.send(("chunk", chunk))
        connection.send(("done", stats))
    except BaseException as exc:  # reported by the parent
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()


def simulate_history(
    settings,
    days: list[date],
    users: int,
    events_per_user_day: float,
    seed: int,
    late_share: float = 0.002,
    progress: bool = False,
) -> dict:
    """Produce the listening history of ``days`` (event-time stamped) and write the users' true tastes.

    Generation runs in a child process and the producer in this one, so the two overlap. Returns counts:
    valid events per event day, malformed per kind, late arrivals within/beyond the allowed lateness,
    messages sent, elapsed seconds and messages per second.
    """
    import multiprocessing

    from podrec_assets.resources import build_resources

    resources = build_resources(settings)
    kafka, lake = resources["kafka"], resources["lake"]
    started = time.perf_counter()
    episodes = read_catalog(kafka)
    partitions = len(kafka.end_offsets(USER_EVENTS_TOPIC))
    if partitions == 0:
        raise ValueError(
            f"Kafka topic {USER_EVENTS_TOPIC!r} does not exist on {settings.kafka_servers}: run `podrec services start`"
        )
    model = ListeningModel(episodes, users, seed, partitions)
    tastes_uri = _write_tastes(lake, model.tastes_table())
    lateness = timedelta(minutes=settings.kafka_lateness_minutes)
    now_ms = int(time.time() * 1000)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_generate_in_child,
        daemon=True,
        args=(
            sender,
            model,
            seed,
            sorted(days),
            events_per_user_day,
            settings.malformed_share,
            late_share,
            lateness,
            now_ms,
        ),
    )
    child.start()
    sender.close()
    producer = _producer(kafka)
    bar = _progress_bar(progress, "events")
    stats: SimulationStats | None = None
    messages = 0
    try:
        while stats is None:
            try:
                kind, body = receiver.recv()
            except EOFError:
                raise RuntimeError("the event generator process ended without finishing") from None
            if kind == "error":
                raise RuntimeError(f"event generation failed: {body}")
            if kind == "done":
                stats = body
                break
            for ts_ms, key, value, partition in body:
                producer.send(USER_EVENTS_TOPIC, key=key, value=value, timestamp_ms=ts_ms, partition=partition)
            messages += len(body)
            bar.update(len(body))
        producer.flush()
    finally:
        producer.close()
        bar.close()
        receiver.close()
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    seconds = time.perf_counter() - started
    return {
        "days": [d.isoformat() for d in sorted(days)],
        "users": users,
        "episodes": len(episodes),
        "topics": len(model.topics),
        "valid_events": sum(stats.valid_by_day.values()),
        "valid_by_day": dict(sorted(stats.valid_by_day.items())),
        "malformed": stats.malformed,
        "late_within_lateness": stats.late_within,
        "late_beyond_lateness": stats.late_beyond,
        "messages": messages,
        "seconds": round(seconds, 3),
        "messages_per_second": round(messages / seconds, 1),
        "tastes_table": tastes_uri,
        "seed": seed,
    }


def simulate_follow(
    settings, users: int, rate: float, seed: int, duration_s: float | None = None, progress: bool = False
) -> dict:
    """Stream now-stamped events at ``rate`` per second until Ctrl-C (or ``duration_s``)."""
    from podrec_assets.resources import build_resources

    if rate <= 0:
        raise ValueError("--rate must be positive")
    resources = build_resources(settings)
    kafka, lake = resources["kafka"], resources["lake"]
    model = ListeningModel(read_catalog(kafka), users, seed, len(kafka.end_offsets(USER_EVENTS_TOPIC)) or 1)
    _write_tastes(lake, model.tastes_table())
    rng = random.Random(f"podrec-follow-{seed}")
    producer = _producer(kafka)
    bar = _progress_bar(progress, "events")
    started = time.monotonic()
    sent = 0
    queue: list[tuple[User, Episode, dict]] = []
    try:
        while duration_s is None or time.monotonic() - started < duration_s:
            due = int((time.monotonic() - started) * rate) - sent
            if due <= 0:
                time.sleep(0.02)
                continue
            now_ms = int(time.time() * 1000)
            for _ in range(due):
                if not queue:
                    user = rng.choice(model.users)
                    episode = model.pick(rng, user, now_ms, now_ms - now_ms % DAY_MS)
                    if episode is None:
                        raise ValueError("no episode is published yet: nothing to listen to")
                    queue = [
                        (user, episode, e) for e in model.listen(rng, user, episode, now_ms, rng.choice(user.devices))
                    ]
                user, episode, event = queue.pop(0)
                event["ts"] = now_ms
                payload = _payload(_uuid4(rng), user, episode.episode_id, event)
                producer.send(
                    USER_EVENTS_TOPIC,
                    key=user.key,
                    value=_encode(payload),
                    timestamp_ms=now_ms,
                    partition=user.partition,
                )
            sent += due
            bar.update(due)
            producer.check()  # a live stream reports a failing broker at once, not at Ctrl-C
        producer.flush()
    except KeyboardInterrupt:
        producer.flush()  # Ctrl-C stops the stream; what was already sent still gets delivered
    finally:
        try:
            producer.close()
        finally:
            bar.close()
    seconds = time.monotonic() - started
    return {"messages": sent, "seconds": round(seconds, 3), "messages_per_second": round(sent / max(seconds, 1e-9), 1)}


def _progress_bar(enabled: bool, unit: str):
    from tqdm import tqdm

    return tqdm(unit=f" {unit}", unit_scale=True, disable=not enabled, file=sys.stderr, mininterval=0.5)
