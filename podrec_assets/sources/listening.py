"""The listening model of the simulator: users with latent topic tastes, popularity skew, sessions and devices.

See ``sources/simulator.py`` for the whole model; this module holds the catalog as the simulator sees it (read from
the `episode-metadata` topic), the users and the events of one listen or one user's day, as plain dicts.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import zlib
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa

from podrec_assets.core.events import parse_ts
from podrec_assets.core.registry import EPISODE_METADATA_TOPIC

TASTE_LOYALTY = 0.8
ACTIVE_SHARE = 0.6
DEVICES = ("ios", "android", "web", "smart_speaker", "car")
# listens per hour of the day (relative)
DIURNAL = [1, 0.6, 0.4, 0.3, 0.3, 0.6, 2, 4, 5, 3, 2, 2, 3, 2, 2, 2, 3, 5, 5, 4, 4, 4, 3, 2]
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

    def _pool(self, day_ms: int, topic: str | None) -> tuple[list[int], list[float]]:
        """Every episode of ``topic`` (None: all) in catalog order with cumulative pick weights on ``day_ms``.

        Episodes are sorted by publication, so the ones listenable at a moment are a prefix of this pool and its
        cumulative weights: one pool a day and topic serves every moment (a pool per number of published episodes
        was a pool per publication time: tens of GB for a catalogue published through the day)."""
        key = (day_ms, topic)
        pool = self._pools.get(key)
        if pool is None:
            indices, cumulative, total = [], [], 0.0
            for i, episode in enumerate(self.episodes):
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
        indices, cumulative = self._pool(day_ms, topic)
        listenable = bisect.bisect_left(indices, available)  # the published prefix of the pool
        if not listenable:
            indices, cumulative = self._pool(day_ms, None)
            listenable = bisect.bisect_left(indices, available)
        position = bisect.bisect_left(cumulative, rng.random() * cumulative[listenable - 1], 0, listenable)
        return self.episodes[indices[min(position, listenable - 1)]]

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
