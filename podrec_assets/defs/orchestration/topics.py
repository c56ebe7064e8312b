"""The Kafka topics (``core/registry.py``) as external assets: in lineage, carrying the sensors' lag observations."""

from __future__ import annotations

import dagster as dg

from podrec_assets.core.registry import TOPICS


def topic_asset_key(topic: str) -> dg.AssetKey:
    return dg.AssetKey(["kafka", topic.replace("-", "_")])  # any topic a sensor watches, not only the registry's


def topic_specs() -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            topic_asset_key(topic.name),
            description=topic.description,
            group_name="kafka",
            kinds={"kafka"},
            metadata={"topic": topic.name, "message_key": topic.message_key},
        )
        for topic in TOPICS.values()
    ]
