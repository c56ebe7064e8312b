"""The one list of podrec's Delta tables and Kafka topics.

Assets, checks, the MongoDB resource, the local Kafka set-up and the Dash app all read these facts from here,
so adding a table or a topic is one entry, and its contract (schema, keys), its serving copy (collection,
indexes, per-user lists) and how Dash mirrors it cannot disagree between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from podrec_assets.core import schemas


@dataclass(frozen=True)
class Table:
    """A Delta table: its contract, how a day of it is found, and where it is served."""

    name: str
    schema: pa.Schema
    keys: tuple[tuple[str, ...], ...]  # each set of columns identifies a row within a day
    day_column: str = "date"  # the partition column the lake adds
    serving: str | None = None  # its MongoDB copy (a collection of the same name): "by_day" or "by_key" (upserts)
    list_owner: str | None = None  # served a bucket of owners per document, their ranked rows as columns
    indexes: tuple[dict[str, Any], ...] = ()  # MongoDB indexes of the serving copy
    mirror_order: str | None = None  # the sort key of the Dash app's DuckDB copy (None: Dash does not read it)
    in_graph: bool = True  # a table the daily graph writes (the health page lists these)


@dataclass(frozen=True)
class Topic:
    """A Kafka topic: what its messages are, what they are keyed by, and the tables they land in."""

    name: str
    description: str
    message_key: str
    partitions_setting: str  # the Settings field that sizes it
    min_partitions: int = 1
    table: str | None = None  # the table its good messages become
    dead_letter_asset: str | None = None  # the asset holding its malformed messages (a slice of dead_letters)


EPISODE_METADATA_TOPIC = "episode-metadata"
EPISODE_IDS_TOPIC = "episode-ids"
USER_EVENTS_TOPIC = "user-events"

TOPICS: dict[str, Topic] = {
    topic.name: topic
    for topic in (
        Topic(
            EPISODE_METADATA_TOPIC,
            "Episode metadata messages (key episode_id); read day by day into `episodes`.",
            "episode_id",
            "episode_topic_partitions",
            table="episodes",
            dead_letter_asset="dead_letters/episode_metadata",
        ),
        Topic(
            EPISODE_IDS_TOPIC,
            "Lightweight (episode_id, published_at) announcements of new episodes.",
            "episode_id",
            "episode_topic_partitions",
        ),
        Topic(
            USER_EVENTS_TOPIC,
            "Listening events (key user_id): play/pause/like/skip/rate/complete; read into `user_events`.",
            "user_id",
            "user_events_partitions",
            min_partitions=3,
            table="user_events",
            dead_letter_asset="dead_letters/user_events",
        ),
    )
}

_WRITE_INDEX = {"keys": [("date", 1), ("write_id", 1)]}  # finds a day's write when it is swapped or deleted


def _ranked_list_table(name: str, schema: pa.Schema, mirror_order: str | None = None) -> Table:
    """A per-user ranked list (one row per user and episode, ranks 1..N), served a bucket of users per document."""
    return Table(
        name,
        schema,
        (("user_id", "episode_id"), ("user_id", "rank")),
        serving="by_day",
        list_owner="user_id",
        indexes=({"keys": [("date", 1), ("write_id", 1), ("bucket", 1)]},),  # a day's write, one user's bucket
        mirror_order=mirror_order,
    )


TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        Table(
            "episodes",
            schemas.EPISODES,
            (("episode_id",),),
            serving="by_key",
            indexes=(
                {"keys": [("episode_id", 1)], "unique": True},
                {"keys": [("date", -1)]},
                {"keys": [("podcast_title", 1)]},
            ),
            mirror_order="episode_id, date",
        ),
        Table("transcripts", schemas.TRANSCRIPTS, (("episode_id",),), mirror_order="episode_id, date"),
        Table("user_events", schemas.USER_EVENTS, (("event_id",),), mirror_order="ts"),
        Table(
            "user_episode_daily", schemas.USER_EPISODE_DAILY, (("user_id", "episode_id"),), mirror_order="user_id, date"
        ),
        Table("listener_history", schemas.LISTENER_HISTORY, (("user_id", "episode_id"),)),
        Table("episode_vectors", schemas.EPISODE_VECTORS, (("episode_id",),)),
        Table(
            "similarities",
            schemas.SIMILARITIES,
            (("new_episode_id", "historical_episode_id", "model"), ("new_episode_id", "model", "rank")),
            serving="by_day",
            indexes=(
                {"keys": [("new_episode_id", 1), ("model", 1), ("cosine_similarity", -1)]},
                {"keys": [("historical_episode_id", 1), ("model", 1)]},
                _WRITE_INDEX,
            ),
            mirror_order="new_episode_id, date, rank",
        ),
        _ranked_list_table("als_top_n", schemas.ALS_TOP_N),
        Table("als_factors", schemas.ALS_FACTORS, (("model_version", "kind", "id"),), in_graph=False),
        _ranked_list_table("final_recommendations", schemas.FINAL_RECOMMENDATIONS, mirror_order="user_id, date, rank"),
        Table(
            "recommendation_metrics",
            schemas.RECOMMENDATION_METRICS,
            (("model", "metric", "k"),),
            mirror_order="date, model, metric",
        ),
        Table(
            "dead_letters",
            schemas.DEAD_LETTERS,
            (("kafka_partition", "kafka_offset"),),
            mirror_order="date, topic",
        ),
    )
}

DEAD_LETTERS_TABLE = "dead_letters"
TASTES_TABLE = "simulated_user_tastes"  # the simulator's ground truth (no day partitions), read by evaluation


@dataclass(frozen=True)
class AssetTable:
    """The rows of one asset: a table, or the slice of it that one asset owns (``where``)."""

    table: Table
    where: dict[str, Any] = field(default_factory=dict)


def asset_tables() -> dict[str, AssetTable]:
    """Per asset key (user string), the table rows it writes: every graph table, and dead_letters per topic."""
    found = {name: AssetTable(t) for name, t in TABLES.items() if t.in_graph and name != DEAD_LETTERS_TABLE}
    for topic in TOPICS.values():
        if topic.dead_letter_asset:
            found[topic.dead_letter_asset] = AssetTable(TABLES[DEAD_LETTERS_TABLE], {"topic": topic.name})
    return found


def served_tables() -> list[str]:
    """The tables with a MongoDB copy replaced and swapped in day by day."""
    return [name for name, t in TABLES.items() if t.serving == "by_day"]
