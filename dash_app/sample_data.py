"""Synthetic tables in the project's schemas, for the Dash app's browser tests and its benchmark.

Vectorised (numpy -> Arrow) so the benchmark can write 50k users and over a million recommendation rows in
seconds; written through LakeResource / MongoResource exactly like the assets write them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from podrec_assets.core import schemas
from podrec_assets.core.registry import USER_EVENTS_TOPIC
from podrec_assets.resources.lake import LakeResource
from podrec_assets.resources.mongo import MongoResource

TOPICS = ["Space", "Cooking", "History", "Startups", "Jazz", "Climate", "Chess", "Medicine"]
WORDS = [
    "orbit",
    "rocket",
    "bread",
    "spice",
    "empire",
    "river",
    "founder",
    "market",
    "swing",
    "piano",
    "storm",
    "glacier",
    "opening",
    "endgame",
    "vaccine",
    "sleep",
    "signal",
    "story",
    "future",
    "garden",
]
EVENTS = np.array(["play", "pause", "like", "skip", "rate", "complete"])
EVENT_P = np.array([0.45, 0.15, 0.08, 0.12, 0.05, 0.15])
DEVICES = np.array(["ios", "android", "web", "smart_speaker", "car"])
MODELS = ["popularity", "als", "content", "hybrid"]


@dataclass
class SampleSpec:
    days: list[date]
    users: int = 200
    episodes_per_day: int = 12
    recs_per_user: int = 10
    history_per_user_day: int = 2
    events_per_user_day: int = 3
    neighbours: int = 5
    mongo_users: int | None = None  # users whose lists also go to MongoDB (None: all)
    seed: int = 11


def user_ids(n: int) -> np.ndarray:
    return np.array([f"u{i:05d}" for i in range(n)])


def build_episodes(spec: SampleSpec) -> pa.Table:
    rows = []
    rng = np.random.default_rng(spec.seed)
    for d_index, day in enumerate(spec.days):
        for j in range(spec.episodes_per_day):
            i = d_index * spec.episodes_per_day + j
            topic = TOPICS[i % len(TOPICS)]
            words = rng.choice(WORDS, 2, replace=False)
            rows.append(
                {
                    "episode_id": f"ep{i:05d}",
                    "podcast_id": f"show-{topic.lower()}",
                    "podcast_title": f"The {topic} Hour",
                    "episode_title": f"{words[0].title()} and {words[1]}: {topic.lower()} talk #{i}",
                    "description": f"A conversation about {topic.lower()}, {words[0]} and {words[1]}.",
                    "audio_url": f"file:///tmp/ep{i:05d}.wav",
                    "language": "en",
                    "published_at": datetime(day.year, day.month, day.day, 6 + j % 12, tzinfo=timezone.utc),
                    "duration_sec": float(600 + 60 * (i % 30)),
                    "categories": [topic, "Demo"],
                    "source": "demo",
                    "kafka_partition": 0,
                    "kafka_offset": i,
                }
            )
    return schemas.to_table(rows, schemas.EPISODES)


def episodes_of_day(spec: SampleSpec, d_index: int) -> list[str]:
    return [f"ep{d_index * spec.episodes_per_day + j:05d}" for j in range(spec.episodes_per_day)]


def build_transcripts(spec: SampleSpec, d_index: int) -> pa.Table:
    rows = []
    for k, episode_id in enumerate(episodes_of_day(spec, d_index)):
        topic = TOPICS[int(episode_id[2:]) % len(TOPICS)].lower()
        failed = k == spec.episodes_per_day - 1 and spec.episodes_per_day > 2
        segments = [
            {
                "start": 6.0 * s,
                "end": 6.0 * s + 5.5,
                "text": f"Segment {s} of {episode_id}: today we talk about {topic} and the "
                f"{WORDS[(s + k) % len(WORDS)]}.",
            }
            for s in range(8)
        ]
        published = k == 1  # the day's second episode comes with its publisher's HTML transcript (no times)
        rows.append(
            {
                "episode_id": episode_id,
                "status": "failed" if failed else "ok",
                "error": "audio could not be decoded" if failed else None,
                "language": "en",
                "language_probability": None if published else 0.98,
                "audio_seconds": 48.0,
                "wall_seconds": 2.1,
                "model": "publisher" if published else "tiny.en",
                "text": None if failed else " ".join(s["text"] for s in segments),
                "segments": [] if failed or published else segments,
                "text_source": "published" if published else "asr",
                "asr_reason": None
                if published
                else (
                    "unparsable: https://cdn.example/t.vtt: WebVTT must start with 'WEBVTT'"
                    if k == 2
                    else "none_published"
                ),
                "transcript_url": f"https://cdn.example/{episode_id}.html" if published else None,
                "transcript_format": "html" if published else None,
            }
        )
    return schemas.to_table(rows, schemas.TRANSCRIPTS)


def build_similarities(spec: SampleSpec, d_index: int) -> pa.Table:
    rng = np.random.default_rng(spec.seed + 100 + d_index)
    catalog = [e for d in range(d_index + 1) for e in episodes_of_day(spec, d)]
    rows = []
    for episode_id in episodes_of_day(spec, d_index):
        others = [e for e in catalog if e != episode_id]
        picks = rng.choice(others, min(spec.neighbours, len(others)), replace=False)
        cosines = np.sort(rng.uniform(0.35, 0.92, len(picks)))[::-1]
        for rank, (other, cos) in enumerate(zip(picks, cosines), start=1):
            rows.append(
                {
                    "new_episode_id": episode_id,
                    "historical_episode_id": str(other),
                    "rank": rank,
                    "cosine_similarity": float(cos),
                    "distance": float(1 - cos),
                    "model": "all-MiniLM-L6-v2",
                }
            )
    return schemas.to_table(rows, schemas.SIMILARITIES)


def build_daily(spec: SampleSpec, d_index: int) -> pa.Table:
    """user_episode_daily for one day: each user engages with a few episodes published so far."""
    rng = np.random.default_rng(spec.seed + 200 + d_index)
    day = spec.days[d_index]
    catalog_size = (d_index + 1) * spec.episodes_per_day
    n = spec.users * spec.history_per_user_day
    users = np.repeat(user_ids(spec.users), spec.history_per_user_day)
    episode_index = (np.arange(n) * 7 + rng.integers(0, catalog_size, n)) % catalog_size
    played = rng.uniform(0.05, 1.0, n)
    completed = played > 0.85
    base = np.datetime64(datetime(day.year, day.month, day.day))
    last_event = (base + rng.integers(0, 86_400, n).astype("timedelta64[s]")).astype("datetime64[us]")
    return pa.table(
        {
            "user_id": users,
            "episode_id": np.char.add("ep", np.char.zfill(episode_index.astype(str), 5)),
            "engagement": np.round(played * 3 + completed * 3, 2),
            "event_count": rng.integers(1, 6, n),
            "max_played_pct": played,
            "completed": completed,
            "last_event_at": pa.array(last_event).cast(pa.timestamp("us", tz="UTC")),
        },
        schema=schemas.USER_EPISODE_DAILY,
    )


def build_events(spec: SampleSpec, d_index: int) -> pa.Table:
    rng = np.random.default_rng(spec.seed + 300 + d_index)
    day = spec.days[d_index]
    catalog_size = (d_index + 1) * spec.episodes_per_day
    n = spec.users * spec.events_per_user_day
    # a few more users appear each day, so "new vs returning" has both
    active_users = int(spec.users * (0.6 + 0.4 * (d_index + 1) / len(spec.days)))
    users = rng.integers(0, max(active_users, 1), n)
    events = rng.choice(EVENTS, n, p=EVENT_P)
    seconds = np.sort(rng.integers(0, 86_400, n))
    base = np.datetime64(datetime(day.year, day.month, day.day))
    ts = (base + seconds.astype("timedelta64[s]")).astype("datetime64[us]")
    played = rng.uniform(0, 1, n)
    return pa.table(
        {
            "event_id": np.char.add(f"e{d_index}-", np.arange(n).astype(str)),
            "ts": pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
            "user_id": np.char.add("u", np.char.zfill(users.astype(str), 5)),
            "episode_id": np.char.add("ep", np.char.zfill(rng.integers(0, catalog_size, n).astype(str), 5)),
            "event": events,
            "device": rng.choice(DEVICES, n, p=[0.35, 0.3, 0.2, 0.1, 0.05]),
            "rating": pa.array(rng.integers(1, 6, n), pa.int32(), mask=events != "rate"),
            "position_sec": played * 1200,
            "from_sec": played * 600,
            "to_sec": played * 1200,
            "played_pct": played,
            "kafka_partition": (users % 3).astype(np.int32),
            "kafka_offset": np.arange(n, dtype=np.int64),
        },
        schema=schemas.USER_EVENTS,
    )


def build_recommendations(spec: SampleSpec, d_index: int) -> pa.Table:
    rng = np.random.default_rng(spec.seed + 400 + d_index)
    catalog_size = (d_index + 1) * spec.episodes_per_day
    n_users, k = spec.users, spec.recs_per_user
    n = n_users * k
    users = np.repeat(user_ids(n_users), k)
    ranks = np.tile(np.arange(1, k + 1, dtype=np.int32), n_users)
    offset = rng.integers(0, catalog_size, n_users).repeat(k)
    episode_index = (offset + np.tile(np.arange(k), n_users) * 3 + d_index) % catalog_size
    als = np.sort(rng.uniform(0.1, 1.0, (n_users, k)), axis=1)[:, ::-1].ravel()
    content = rng.uniform(0.2, 0.95, n)
    alpha = np.where(episode_index >= catalog_size - spec.episodes_per_day, 0.1, 0.7)
    final = alpha * als + (1 - alpha) * content
    reason = np.where(alpha < 0.5, "content", np.where(content > 0.6, "hybrid", "als"))
    reason[np.repeat(np.arange(n_users) % 17 == 16, k)] = "popular"
    because_index = (episode_index + 5) % catalog_size
    because = np.where(
        np.isin(reason, ["content", "hybrid"]), np.char.add("ep", np.char.zfill(because_index.astype(str), 5)), None
    )
    return pa.table(
        {
            "user_id": users,
            "episode_id": np.char.add("ep", np.char.zfill(episode_index.astype(str), 5)),
            "rank": ranks,
            "final_score": final,
            "als_score": als,
            "content_score": content,
            "alpha": alpha,
            "reason": reason,
            "because_episode_id": pa.array(because, pa.string()),
            "model_version": np.full(n, f"als-{spec.days[d_index].isoformat()}-f64"),
        },
        schema=schemas.FINAL_RECOMMENDATIONS,
    )


def build_metrics(spec: SampleSpec, d_index: int) -> pa.Table:
    rng = np.random.default_rng(spec.seed + 500 + d_index)
    base = {"popularity": 0.05, "als": 0.11, "content": 0.08, "hybrid": 0.13}
    rows = []
    for model in MODELS:
        for metric in ("precision@10", "recall@10", "ndcg@10", "map@10"):
            rows.append(
                {
                    "model": model,
                    "metric": metric,
                    "k": 10,
                    "value": float(base[model] * rng.uniform(0.85, 1.15)),
                    "users_evaluated": spec.users,
                }
            )
        rows.append(
            {
                "model": model,
                "metric": "ndcg@10_stderr",
                "k": 10,
                "value": float(base[model] * 0.05),
                "users_evaluated": spec.users,
            }
        )
        for metric, value in (
            ("coverage", rng.uniform(0.2, 0.9)),
            ("novelty", rng.uniform(2, 6)),
            ("diversity", rng.uniform(0.3, 0.7)),
        ):
            rows.append(
                {"model": model, "metric": metric, "k": 10, "value": float(value), "users_evaluated": spec.users}
            )
    return schemas.to_table(rows, schemas.RECOMMENDATION_METRICS)


def build_dead_letters(spec: SampleSpec, d_index: int) -> pa.Table:
    day = spec.days[d_index]
    rows = [
        {
            "topic": USER_EVENTS_TOPIC,
            "kafka_partition": i % 3,
            "kafka_offset": 10_000 + i,
            "kafka_timestamp": datetime(day.year, day.month, day.day, 12, i % 60, tzinfo=timezone.utc),
            "key": f"u{i:05d}",
            "raw_payload": "{not json" if i % 2 else '{"event": "teleport"}',
            "reason": "invalid JSON" if i % 2 else "unknown event type 'teleport'",
        }
        for i in range(3 + d_index)
    ]
    return schemas.to_table(rows, schemas.DEAD_LETTERS)


def write_sample(lake: LakeResource, mongo: MongoResource | None, spec: SampleSpec, run_id: str = "sample") -> dict:
    """Write every table the app reads for ``spec.days`` (and the serving copy to MongoDB when given)."""
    episodes = build_episodes(spec)
    counts: dict[str, int] = {}
    mongo_users = set(user_ids(spec.users if spec.mongo_users is None else min(spec.mongo_users, spec.users)))
    for d_index, day in enumerate(spec.days):
        day_episodes = episodes.filter(pc.is_in(episodes["episode_id"], pa.array(episodes_of_day(spec, d_index))))
        tables = {
            "episodes": day_episodes,
            "transcripts": build_transcripts(spec, d_index),
            "similarities": build_similarities(spec, d_index),
            "user_episode_daily": build_daily(spec, d_index),
            "user_events": build_events(spec, d_index),
            "final_recommendations": build_recommendations(spec, d_index),
            "dead_letters": build_dead_letters(spec, d_index),
        }
        if d_index > 0:
            tables["recommendation_metrics"] = build_metrics(spec, d_index)
        for name, table in tables.items():
            lake.write_partition(name, day, table, run_id)
            counts[name] = counts.get(name, 0) + table.num_rows
        if mongo is not None:
            recs = tables["final_recommendations"]
            keep = recs.filter(pc.is_in(recs["user_id"], pa.array(sorted(mongo_users))))
            mongo.replace_day(
                "final_recommendations",
                day,
                keep.drop_columns(["model_version"]).to_pylist(),
                run_id,
                model_version=f"als-{day.isoformat()}-f64",
            )
            mongo.replace_day(
                "similarities", day, tables["similarities"].to_pylist(), run_id, model_version="all-MiniLM-L6-v2"
            )
            catalog = [
                {**row, "date": day.isoformat(), "run_id": run_id, "model_version": None}
                for row in day_episodes.to_pylist()
            ]
            mongo.upsert_many("episodes", ["episode_id"], catalog)
            counts["mongo_final_recommendations"] = counts.get("mongo_final_recommendations", 0) + keep.num_rows
    return counts
