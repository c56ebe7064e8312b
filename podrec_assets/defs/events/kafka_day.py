"""One day of `user-events` from Kafka into Delta: the `user_events` asset's whole read path (offset range,
retention guard, validation, dead letters, the one-commit write), callable without Dagster (bench/events.py)."""

import json
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any

from podrec_assets.core.days import day_bounds_ms
from podrec_assets.core.dead_letters import dead_letter_table
from podrec_assets.core.events import Catalog, parse_ts, split_day
from podrec_assets.core.registry import DEAD_LETTERS_TABLE, EPISODE_METADATA_TOPIC, USER_EVENTS_TOPIC
from podrec_assets.resources.kafka import KafkaResource
from podrec_assets.resources.lake import LakeResource

USER_EVENTS = "user_events"
USER_EPISODE_DAILY = "user_episode_daily"


class RetentionError(RuntimeError):
    """The broker lost records of a day that already has data (retention, or a wiped broker): re-reading would
    replace it with less."""


def episode_catalog(kafka: KafkaResource, lake: LakeResource, day: date) -> Catalog:
    """Episodes known by the end of ``day`` (+ lateness): Delta `episodes` up to D, plus the topic."""
    known: set[str] = set()
    if lake.exists("episodes"):
        known.update(
            lake.read_days("episodes", date(1970, 1, 1), day, columns=["episode_id"]).column("episode_id").to_pylist()
        )
    _, _, late_ms = day_bounds_ms(day, kafka.lateness_minutes)
    ends = kafka.end_offsets(EPISODE_METADATA_TOPIC)
    for record in kafka.read_range(EPISODE_METADATA_TOPIC, {p: (0, end) for p, end in ends.items()}):
        try:
            payload = json.loads(record.value)
            if (
                isinstance(payload.get("episode_id"), str)
                and parse_ts(str(payload["published_at"])).timestamp() * 1000 < late_ms
            ):
                known.add(payload["episode_id"])
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            continue  # a bad catalog message is the episodes asset's dead letter, not ours
    return Catalog(frozenset(known))


def read_user_events_day(
    kafka: KafkaResource, lake: LakeResource, day: date, run_id: str, write: bool = True, spark: Any = None
) -> dict[str, Any]:
    """Read, validate and (when ``write``) store one day; returns the materialization metadata.

    ``spark``: a SparkSession to read the day's offset ranges with Spark's Kafka source (engine=spark);
    validation and the Delta write are the same whichever reads."""
    started = time.perf_counter()
    day_range = kafka.day_range(USER_EVENTS_TOPIC, day)
    existing = lake.day_row_count(USER_EVENTS, day)
    reason = day_range.why_rereading_loses(existing, lake.day_top_offsets(USER_EVENTS, day) if existing else {})
    if reason:
        raise RetentionError(
            f"user_events[{day}]: {reason} (broker {kafka.bootstrap_servers}). Refusing to replace the {existing} "
            f"stored rows (table version {lake.version(USER_EVENTS)}) with less; they are kept as they are. Restore "
            "the broker's data, or replay the day into the topic, then re-run."
        )
    records = kafka.read_records(day_range, spark)
    read_s = time.perf_counter() - started
    catalog = episode_catalog(kafka, lake, day)
    split = split_day(
        USER_EVENTS_TOPIC,
        day,
        records,
        catalog,
        day_range.previous_stop,
        day_range.midnight,
        timedelta(minutes=kafka.lateness_minutes),
        datetime.now(timezone.utc),
    )
    metadata: dict[str, Any] = {
        "rows": split.row_count,
        "dead_letters": len(split.dead_letters),
        "offsets_read": len(records),
        "offset_ranges": day_range.range_metadata(),
        "kafka_reader": "spark" if spark is not None else "kafka-python",
        "late_events_accepted": split.late_accepted,
        "too_late_events": split.too_late,
        "other_day_records": split.other_days,
        "dead_letter_reasons": split.reasons,
        "catalog_episodes": len(catalog.episode_ids),
        "lateness_minutes": kafka.lateness_minutes,
        "possibly_truncated_partitions": day_range.possibly_truncated,
    }
    if write:
        written = lake.write_partition(USER_EVENTS, day, split.table(), run_id)
        dead = lake.write_partition(
            DEAD_LETTERS_TABLE, day, dead_letter_table(split.dead_letters), run_id, where={"topic": USER_EVENTS_TOPIC}
        )
        metadata.update(
            delta_version=written["delta_version"],
            dead_letters_delta_version=dead["delta_version"],
            table_uri=written["table_uri"],
        )
    seconds = time.perf_counter() - started
    metadata.update(
        read_seconds=round(read_s, 3),
        seconds=round(seconds, 3),
        events_per_second=round(len(records) / seconds, 1) if seconds else 0.0,
    )
    return metadata
