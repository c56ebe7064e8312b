"""Publishing episodes to Kafka (``episode-metadata`` and ``episode-ids``), idempotent by episode_id.

Before producing, the ids already on ``episode-ids`` are read (a bounded range, consumer closed after), and
only new episodes are sent: re-running a producer adds nothing. Downstream de-duplication by episode_id
covers the rest (two producers racing, or a re-published episode with new metadata via ``force``).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from podrec_assets.core.episodes import episode_id_message, episode_message
from podrec_assets.core.registry import EPISODE_IDS_TOPIC, EPISODE_METADATA_TOPIC


def published_episode_ids(kafka) -> set[str]:
    """Every episode_id on the ``episode-ids`` topic (empty when the topic is empty or missing)."""
    ends = kafka.end_offsets(EPISODE_IDS_TOPIC)
    records = kafka.read_range(EPISODE_IDS_TOPIC, {p: (0, end) for p, end in ends.items()})
    ids = set()
    for record in records:
        if record.key is not None:
            ids.add(record.key.decode("utf-8", "replace"))
        else:
            try:
                ids.add(json.loads(record.value)["episode_id"])
            except (ValueError, KeyError, TypeError, RecursionError):
                continue
    return ids


def publish_episodes(
    kafka, episodes: Iterable[dict[str, Any]], force: bool = False, progress: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Validate and publish episodes not yet on the topics; returns counts (published, already, invalid)."""
    say = progress or (lambda message: None)
    known = set() if force else published_episode_ids(kafka)
    metadata, ids, invalid, already = [], [], 0, 0
    seen: set[str] = set()
    for episode in episodes:
        if episode["episode_id"] in known or episode["episode_id"] in seen:
            already += 1
            continue
        try:
            metadata.append(episode_message(episode))
        except ValueError as exc:
            invalid += 1
            say(f"not published {episode.get('episode_id')!r}: {exc}")
            continue
        ids.append(episode_id_message(episode))
        seen.add(episode["episode_id"])
    if metadata:
        kafka.produce(EPISODE_METADATA_TOPIC, metadata)
        kafka.produce(EPISODE_IDS_TOPIC, ids)
    say(
        f"published {len(metadata)} episodes to {EPISODE_METADATA_TOPIC} and {EPISODE_IDS_TOPIC}; "
        f"{already} already there, {invalid} invalid"
    )
    return {"published": len(metadata), "already_published": already, "invalid": invalid}
