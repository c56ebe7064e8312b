"""The Kafka topics as external assets: they appear in lineage and carry the sensors' lag observations."""

from __future__ import annotations

import dagster as dg

TOPICS = ("episode-metadata", "episode-ids", "user-events")

TOPIC_DESCRIPTIONS = {
    "episode-metadata": "Episode metadata messages (key episode_id); read day by day into `episodes`.",
    "episode-ids": "Lightweight (episode_id, published_at) announcements of new episodes.",
    "user-events": "Listening events (key user_id): play/pause/like/skip/rate/complete; read into `user_events`.",
}


def topic_asset_key(topic: str) -> dg.AssetKey:
    return dg.AssetKey(["kafka", topic.replace("-", "_")])


def topic_specs() -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            topic_asset_key(topic),
            description=TOPIC_DESCRIPTIONS[topic],
            group_name="kafka",
            kinds={"kafka"},
            metadata={"topic": topic},
        )
        for topic in TOPICS
    ]
